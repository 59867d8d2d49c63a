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
import shutil
import tempfile
from pathlib import Path

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
        os.replace(work, target)
    except OSError:
        if (target / GRAPH_NAME).is_file():
            return target / GRAPH_NAME  # another process finished first
        raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return target / GRAPH_NAME
