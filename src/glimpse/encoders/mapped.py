"""A memory-mappable copy of an ONNX graph that carries its weights inline (as immich publishes them).

onnxruntime reads a graph's inline weights whole when it creates a session: for immich's B/32 text tower
(253 MB in one ``model.onnx``) that is ~0.6 s of every cold ``glimpse search``. Weights in an external
data file are memory-mapped instead, and a query touches only the rows it needs. So the first session of
such a graph also writes a copy with external weights into glimpse's cache (``digests.cache_dir()/onnx/
<sha256>/``), keyed by the published file's content hash; later processes load the copy. The published
files are never changed. The copy is saved at onnxruntime's *basic* optimisation level (portable across
CPUs: no hardware-specific fusions), so the session built from it applies the same further optimisations
as one built from the original. Anything failing here falls back to the original file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

#: graphs at least this large hold their weights inline (a graph without weights is a few MB at most)
INLINE_WEIGHTS_BYTES = 32 * 1024 * 1024
GRAPH_NAME = "model.onnx"
DATA_NAME = "model.onnx.data"


def mapped_copy(path: Path) -> Path | None:
    """The cached external-data copy of ``path`` (written now if missing), or None when ``path`` needs none
    (small, or already external) or the copy cannot be made (read-only cache, onnxruntime refusing)."""
    try:
        if path.stat().st_size < INLINE_WEIGHTS_BYTES:
            return None
        from glimpse.digests import cache_dir, file_sha256

        target = cache_dir() / "onnx" / file_sha256(path)
        if (target / GRAPH_NAME).is_file() and (target / DATA_NAME).is_file():
            return target / GRAPH_NAME
        return _write_copy(path, target)
    except Exception:
        return None


def _write_copy(path: Path, target: Path) -> Path:
    import shutil  # (here: a search that finds its copy made imports neither)
    import tempfile

    import onnxruntime as ort

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".writing-", dir=target.parent))
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(work / GRAPH_NAME)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", DATA_NAME)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        if not (work / GRAPH_NAME).is_file() or not (work / DATA_NAME).is_file():
            raise OSError("onnxruntime wrote no external-data copy")
        # The folder appears whole or not at all (another process may be writing the same copy).
        try:
            os.replace(work, target)
        except OSError:
            if (target / GRAPH_NAME).is_file() or not target.is_dir():
                raise
            # The folder holds only a cut copy (``CUT_NAME``) of a small graph: the graph goes in last.
            for name in (DATA_NAME, GRAPH_NAME):
                os.replace(work / name, target / name)
    except OSError:
        if (target / GRAPH_NAME).is_file():
            return target / GRAPH_NAME  # another process finished first
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return target / GRAPH_NAME


#: the cut copy of a fixed-length text graph (``glimpse.encoders.shorten``), beside the mapped copy's weights;
#: the version changes whenever the rewrite does, so a copy made by older code is never loaded
CUT_NAME = "textual-cut-v3.onnx"
#: written instead when the cut copy's vectors differed from the original's: the cut is not tried again
REFUSED_NAME = "textual-cut-v3.refused"


def cut_copy(path: Path) -> Path | None:
    """The cached, checked cut copy of the text graph ``path`` (``None``: not made yet, refused, or no cache)."""
    try:
        from glimpse.digests import cache_dir, file_sha256

        copy = cache_dir() / "onnx" / file_sha256(path) / CUT_NAME
        return copy if copy.is_file() else None
    except Exception:
        return None


def cut_refused(path: Path) -> bool:
    """True when an earlier cut copy of ``path`` gave other vectors than the graph itself (never retried)."""
    try:
        from glimpse.digests import cache_dir, file_sha256

        return (cache_dir() / "onnx" / file_sha256(path) / REFUSED_NAME).is_file()
    except Exception:
        return False


def write_cut_copy(path: Path, ids_name: str, same_vectors: Callable[[Path], bool]) -> Path | None:
    """Cut the text graph ``path`` to a dynamic sequence axis (input ``ids_name``) into the cache, and keep the
    copy when ``same_vectors(candidate)`` says its outputs equal the graph's; ``None`` when the graph cannot be
    cut, the check fails (remembered: see :func:`cut_refused`) or the cache cannot be written.

    The rewrite reads the mapped copy when there is one (its graph is small, its weights stay in the shared data
    file beside it), else ``path`` itself when its weights are inline (small graphs); a graph whose weights are
    external files of the published folder is not cut (a copy elsewhere could not reach them).
    """
    import tempfile

    from glimpse.digests import cache_dir, file_sha256
    from glimpse.encoders.shorten import cut_sequence_axis, has_external_data

    try:
        target = cache_dir() / "onnx" / file_sha256(path)
        source = mapped_copy(path) or path
        graph = source.read_bytes()
        if source == path and has_external_data(graph):
            return None
        cut = cut_sequence_axis(graph, ids_name)
        if cut is None:
            return None
        target.mkdir(parents=True, exist_ok=True)
        # Written beside the weights it names; renamed into place only once checked.
        handle, name = tempfile.mkstemp(prefix=".cut-", suffix=".onnx", dir=target)
        candidate = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(cut)
            if not same_vectors(candidate):
                (target / REFUSED_NAME).write_text("the cut graph gave other vectors than the original\n")
                return None
            os.replace(candidate, target / CUT_NAME)
        finally:
            with contextlib.suppress(OSError):
                candidate.unlink()
        return target / CUT_NAME
    except Exception:
        return None
