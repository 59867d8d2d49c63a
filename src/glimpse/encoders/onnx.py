"""The ONNX backend: onnxruntime + tokenizers + numpy only (no torch, no transformers, ever).

A model directory in ONNX form names its files in ``spec.extra["onnx"]`` (see :func:`onnx_files`):
``glimpse export`` writes ``visual.onnx``, ``textual.onnx`` and ``tokenizer.json`` next to ``spec.json``;
an immich-style directory (``glimpse.encoders.immich``) points at ``visual/model.onnx`` etc. Each tower's
session is created on first use, so a text search never loads the image tower.

Threads: onnxruntime's intra-op pool gets ``threads`` threads (default: every core). Its workers do not
spin while idle, so the decode threads of the indexer get the cores whenever the encoder waits for them.

Image towers on a CPU with several cores run as one piece of the batch per core: a single-threaded session
whose pieces run on ``threads`` Python threads at once (``run`` releases the GIL), the model's weights held
once. No intra-op synchronisation: an onnxruntime worker that a decode thread delays stalls the other
worker at every kernel's barrier, while a piece on its own core just runs a little later. Measured on 2
cores (``benchmarks/image_layout.py``, docs/BENCHMARKS.md [P]), against one run with two intra-op threads:
``glimpse index`` 1.10x (fp32) and 1.19x (int8), the encoder alone 1.09x and 1.02x. A batch that gives a core
fewer than :data:`PIECE_MIN` images (many cores) keeps one run with intra-op threads, where a piece would be
too small to reuse the weights it streams. The indexer hands such an encoder two batches at once
(``overlapping_batches``): the second batch's pieces queue behind the first's, so a core whose piece is done
takes the next one instead of idling at the batch's end (+3 % int8 ``glimpse index``, alternated, [P]).
The price is one image's latency (an image query runs on one
core): 142 vs 98 ms (fp32), 82 vs 64 ms (int8) for a B/32.

Static shapes: immich's exporter writes graphs with a fixed batch of 1 (image ``[1, 3, S, S]``, text
``int32[1, context_length]``). The batch and sequence dims are read from each graph; a batch is cut into
pieces the graph accepts. An image graph with a fixed batch always runs as above, one image per core.

Fixed-length text graphs of a family whose text tower is causal and pools the end-of-text position (CLIP;
``families.ModelFamily.text_pools_eot``) are fed only each query's real tokens, through a copy of the graph
with a dynamic sequence axis (``glimpse.encoders.shorten``), made once, checked against the original on probe
queries and cached (``glimpse.encoders.mapped``): the same vectors for a fraction of the work.

A text session is created without repacking its weights (quick to create: a search encodes one query); the
second text encode of a process builds a packed session on a background thread, which then replaces it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.encoders.base import Encoder
from glimpse.errors import ModelError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from glimpse.spec import ModelSpec, Preprocess
    from glimpse.tokenizer import TextTokenizer

THREADS_ENV = "GLIMPSE_THREADS"

#: ``--device`` value -> onnxruntime execution providers, best first (CPU always last as the fallback).
_PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "openvino": ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
    "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
    "directml": ["DmlExecutionProvider", "CPUExecutionProvider"],
}
_EP_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu (with TensorRT)",
    "OpenVINOExecutionProvider": "onnxruntime-openvino",
    "CoreMLExecutionProvider": "onnxruntime (macOS build)",
    "DmlExecutionProvider": "onnxruntime-directml",
}
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
_IDS_NAMES = ("input_ids", "text", "input", "ids")
#: queries the cut copy of a fixed-length text graph must reproduce (short, empty, longer than the context)
_CUT_PROBES = ("a photo of a dog", "", "A RED car, on the beach!", "one two three four five six " * 20)
#: how close the cut graph's vectors must be to the full graph's (they differ only by summation order)
CUT_MIN_COSINE = 0.99999
CUT_MAX_DIFF = 1e-4
_TEXT_INPUTS = (*_IDS_NAMES, "attention_mask", "token_type_ids")
#: fewest images per core for an image batch to run as one single-threaded piece per core (module docstring)
PIECE_MIN = 8


def static_dim(node: Any, axis: int) -> int | None:
    """The fixed size of ``axis`` of an onnxruntime input ``node`` (``None`` when symbolic/dynamic)."""
    shape = getattr(node, "shape", None) or []
    if axis < len(shape) and isinstance(shape[axis], int) and shape[axis] > 0:
        return int(shape[axis])
    return None


def check_graph(part: str, session: Any, path: Path) -> None:
    """``ModelError`` naming the inputs when the graph of ``part`` is not one glimpse can feed.

    Image graphs: one rank-4 input (``[batch, 3, H, W]``). Text graphs: ids (``input_ids``/``text``) plus
    optionally ``attention_mask`` / ``token_type_ids``.
    """
    inputs = session.get_inputs()
    described = ", ".join(f"{n.name}{list(n.shape)}" for n in inputs) or "none"
    if part == "visual":
        channels = 3 if len(inputs) == 1 and takes_raw_pixels(inputs[0]) else 1
        if len(inputs) != 1 or len(inputs[0].shape or []) != 4 or static_dim(inputs[0], channels) not in (3, None):
            raise ModelError(f"the image graph {path} takes inputs {described}; glimpse feeds one "
                             "float[batch, 3, H, W] image input (CLIP/SigLIP/immich image towers), or "
                             "uint8[batch, H, W, 3] RGB to a graph that normalises inside")
        return
    names = [n.name for n in inputs]
    if not any(n in _IDS_NAMES for n in names) or any(n not in _TEXT_INPUTS for n in names):
        raise ModelError(f"the text graph {path} takes inputs {described}; glimpse feeds token ids "
                         "('input_ids' or 'text') with optional 'attention_mask' / 'token_type_ids'")


def takes_raw_pixels(node: Any) -> bool:
    """Whether an image graph input is ``uint8[batch, H, W, 3]``: RGB as decoded, normalised inside the graph
    (immich's newer exports and NPU-style graphs, its reader's ``normalizes_input``)."""
    return node.type == "tensor(uint8)"


def raw_pixels(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """``float32[b, 3, H, W]`` normalised pixels back to the ``uint8[b, H, W, 3]`` RGB they were made from.

    Exact: glimpse resizes and crops in 8-bit RGB and only then rescales and normalises, so undoing the affine
    map lands within float error of the integers, and rounding recovers them."""
    mean = np.asarray(pre.mean, np.float32)[None, :, None, None]
    std = np.asarray(pre.std, np.float32)[None, :, None, None]
    values = (pixels * std + mean) / np.float32(pre.rescale)
    return np.ascontiguousarray(np.clip(np.rint(values), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))


def onnx_files(spec: ModelSpec, directory: str | Path) -> dict[str, Path]:
    """Absolute paths of ``visual``, ``textual`` and ``tokenizer`` for an ONNX-form ``spec`` in ``directory``."""
    names = spec.extra.get("onnx")
    if not isinstance(names, dict):
        raise ModelError(
            f"model {spec.name!r} has runtime 'onnx' but its spec.json names no ONNX files (extra.onnx); "
            "re-export it with `glimpse export`"
        )
    files = {}
    for part in ("visual", "textual", "tokenizer"):
        if not isinstance(names.get(part), str):
            raise ModelError(f"spec.json of {spec.name!r} lacks extra.onnx.{part}; re-export the model")
        files[part] = Path(directory) / names[part]
    return files


def default_threads() -> int:
    """``$GLIMPSE_THREADS`` when set, else the number of cores this process may run on."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ModelError(f"{THREADS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def providers_for(device: str) -> list[Any]:
    """The onnxruntime providers for ``device`` (``cpu``, ``cuda[:N]``, ``tensorrt``, ``openvino``, …).

    Raises ``ModelError`` naming the package to install when the wanted provider is not available.
    """
    import onnxruntime as ort

    kind, _, index = device.strip().lower().partition(":")
    kind = "cuda" if kind == "gpu" else kind
    wanted = _PROVIDERS.get(kind)
    if wanted is None:
        raise ModelError(f"unknown device {device!r} for the ONNX runtime; expected one of {sorted(_PROVIDERS)}")
    available = set(ort.get_available_providers())
    if wanted[0] not in available:
        raise ModelError(
            f"device {device!r} needs onnxruntime's {wanted[0]}, but this onnxruntime offers only "
            f"{sorted(available)}; install {_EP_PACKAGES.get(wanted[0], 'a matching onnxruntime build')} "
            "or use --device cpu"
        )
    chosen: list[Any] = [p for p in wanted if p in available]
    if index.isdigit() and chosen[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        chosen[0] = (chosen[0], {"device_id": int(index)})
    return chosen


def make_session(path: Path, *, device: str = "cpu", threads: int | None = None, prepack: bool = True,
                 spin: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` tuned for throughput on ``device``.

    ``prepack=False``: the weights are not repacked for the matrix kernels when the session is created (the
    repacking reads and rewrites every weight: most of a B/32 text session's creation time), which makes the
    session quick to create and each run slower (~2x for a short query); for a process that runs it once.
    ``spin``: the intra-op workers spin between the many small kernels of a run instead of sleeping: a short
    query's text tower runs 1.4x faster (8.2 vs 11.7 ms for a B/32 on 2 cores); off for image towers, whose
    spinning workers would take the cores the decode threads need between batches.
    """
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"ONNX file {path} is missing; re-export the model with `glimpse export`")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    from glimpse.encoders.mapped import mapped_copy

    copy = mapped_copy(path)  # inline weights (immich's files): load a memory-mappable copy instead
    if copy is not None:
        with contextlib.suppress(Exception):
            return ort.InferenceSession(str(copy), sess_options=options, providers=providers_for(device))
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... classes
        raise ModelError(f"onnxruntime cannot load {path} ({type(exc).__name__}: {exc}); re-export the model") from exc


class OnnxEncoder(Encoder):
    """Encoder running ``visual``/``textual`` ONNX graphs with onnxruntime.

    ``_encode_pixels``: ``float32[b, 3, H, W]`` -> ``float32[b, d]``; ``_encode_texts``: ``b`` strings ->
    ``float32[b, d]`` (unnormalised; the base class normalises). Inputs are cast to the dtypes the graph
    declares (float16 graphs, int32 token ids).
    """

    def __init__(
        self,
        spec: ModelSpec,
        directory: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        super().__init__(spec, batch_size)
        self.directory = Path(directory)
        self.files = onnx_files(spec, self.directory)
        self.device = device
        self.threads = threads or default_threads()
        providers_for(device)  # fail now, not at the first batch, when the device cannot be used
        self._sessions: dict[str, Any] = {}
        self._workers: dict[str, int] = {}  # parallel runs per tower (> 1 for single-threaded sessions)
        self._pool: ThreadPoolExecutor | None = None
        self._tokenizer: TextTokenizer | None = None
        self._lock = threading.RLock()  # re-entered: creating the text session reads the tokenizer
        self._prefetch: threading.Thread | None = None
        self._cut = False  # the text session is a cut copy: feed each piece only its real tokens
        self._text_path: Path | None = None  # the graph the text session was made from, when not files["textual"]
        self._text_uses = 0
        self._packer: threading.Thread | None = None

    @property
    def overlapping_batches(self) -> int:
        """2 once the image tower runs as pieces on parallel single-threaded sessions (``_run``): a second batch's
        pieces queue behind the first's on the same threads, so a core whose piece is done takes the next
        piece rather than idling until the other core's piece ends (a decode thread may have slowed it)."""
        return 2 if self._workers.get("visual", 1) > 1 else 1

    # -- lazy resources ------------------------------------------------------------------------------
    def session(self, part: str) -> Any:
        """The onnxruntime session of ``part`` (``"visual"`` or ``"textual"``), created on first use."""
        with self._lock:
            if part not in self._sessions:
                self._sessions[part] = self._create(part)
            return self._sessions[part]

    def _create(self, part: str) -> Any:
        path = self.files[part]
        parallel = part == "visual" and self.device == "cpu" and self.threads > 1
        immich = self.spec.extra.get("onnx", {}).get("layout") == "immich"
        self._workers[part] = 1
        # A text session starts unpacked (quick to create: a search runs one query); a second use packs it.
        prepack = part != "textual"
        if part == "textual" and self._may_cut():
            from glimpse.encoders.mapped import cut_copy

            copy = cut_copy(path)
            if copy is not None:  # checked when it was written; a copy onnxruntime refuses now is skipped
                with contextlib.suppress(ModelError):
                    session = make_session(copy, device=self.device, threads=self.threads, prepack=False, spin=True)
                    self._cut, self._text_path = True, copy
                    return session
        # Known before the graph is read: immich graphs have a fixed batch, and a batch that gives every core
        # PIECE_MIN images runs best as one piece per core; either way the session starts single-threaded
        # rather than being built twice.
        pieces = parallel and (immich or self.batch_size >= PIECE_MIN * self.threads)
        threads = 1 if pieces else self.threads
        session = make_session(path, device=self.device, threads=threads, prepack=prepack, spin=part == "textual")
        check_graph(part, session, path)
        if part == "textual" and self._may_cut():
            return self._cut_session(path, session)
        fixed = static_dim(session.get_inputs()[0], 0) is not None
        if parallel and fixed and not pieces:
            session = make_session(path, device=self.device, threads=1)
        self._workers[part] = self.threads if parallel and (fixed or pieces) else 1
        return session

    # -- fixed-length text graphs: cut to the batch's length where the family makes that exact ----------
    def _may_cut(self) -> bool:
        """Whether this model's text graph may be fed only the real tokens: its texts are padded to the full
        context (a fixed-length graph: immich's), the family pools the end-of-text position of a causal tower
        (``families.ModelFamily.text_pools_eot``) and the padding goes on the right."""
        from glimpse.families import get_family

        return (self.spec.text_padding == "max_length" and get_family(self.spec.family).text_pools_eot
                and self.tokenizer.padding_side == "right")

    def _cut_session(self, path: Path, session: Any) -> Any:
        """The session of the cut copy of the fixed-length text graph ``path`` (made, checked against
        ``session`` and cached on first use, see ``glimpse.encoders.shorten``), else ``session`` itself."""
        from glimpse.encoders.mapped import cut_refused, write_cut_copy

        nodes = session.get_inputs()
        if len(nodes) != 1 or nodes[0].name not in _IDS_NAMES or static_dim(nodes[0], 1) is None:
            return session  # a dynamic length needs no cut; an attention mask input means another kind of tower
        if cut_refused(path):
            return session
        built: dict[str, Any] = {}

        def same_vectors(candidate: Path) -> bool:
            built["session"] = make_session(candidate, device=self.device, threads=self.threads, prepack=False,
                                            spin=True)
            return self._cut_matches(session, built["session"])

        copy = write_cut_copy(path, nodes[0].name, same_vectors)
        if copy is None:
            return session
        self._cut, self._text_path = True, copy
        return built["session"]

    def _pack_text_session(self) -> None:
        """Replace the unpacked text session by a packed one, built on a background thread (the unpacked one
        serves until it is ready): a process that encodes texts more than once runs each query ~2x faster."""
        path = self._text_path or self.files["textual"]

        def build() -> None:
            # On failure the unpacked session simply stays.
            with contextlib.suppress(ModelError):
                packed = make_session(path, device=self.device, threads=self.threads, spin=True)
                with self._lock:
                    if "textual" in self._sessions:
                        self._sessions["textual"] = packed

        self._packer = threading.Thread(target=build, name="glimpse-onnx-pack")
        self._packer.start()

    def _cut_matches(self, full: Any, cut: Any) -> bool:
        """True when ``cut`` fed the real tokens of the probe queries (and a few pads more, as a batch pads its
        shorter texts) gives the vectors ``full`` gives for the same queries padded to its fixed length."""
        node = full.get_inputs()[0]
        length = static_dim(node, 1) or 0
        dtype = _NUMPY_TYPES.get(node.type, np.int64)
        batch = self.tokenizer.encode(list(_CUT_PROBES))
        ids = np.full((len(_CUT_PROBES), length), self.tokenizer.pad_id, dtype)
        width = min(length, batch.input_ids.shape[1])
        ids[:, :width] = batch.input_ids[:, :width]
        output = [full.get_outputs()[0].name]
        for row, real in enumerate(batch.attention_mask.sum(1)):
            want = np.asarray(full.run(output, {node.name: ids[row : row + 1]})[0], np.float64).ravel()
            for keep in sorted({max(int(real), 1), min(int(real) + 3, length)}):
                got = np.asarray(cut.run(output, {node.name: ids[row : row + 1, :keep]})[0], np.float64).ravel()
                if got.shape != want.shape:
                    return False
                cos = float(want @ got) / max(float(np.linalg.norm(want) * np.linalg.norm(got)), 1e-30)
                if cos < CUT_MIN_COSINE or np.abs(want - got).max() > CUT_MAX_DIFF * max(1.0, np.abs(want).max()):
                    return False
        return True

    def _run(self, part: str, session: Any, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
        """Run ``feeds`` (pieces of one batch) through ``session``, in parallel when the tower allows."""
        output = [session.get_outputs()[0].name]
        workers = min(self._workers.get(part, 1), len(feeds))
        if workers <= 1:
            parts = [session.run(output, feed)[0] for feed in feeds]
        else:
            with self._lock:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor  # only image towers run in parallel

                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="glimpse-onnx")
            parts = list(self._pool.map(lambda feed: session.run(output, feed)[0], feeds))
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=0)

    def prefetch_image_tower(self) -> None:
        """Create the image session on a background thread (``session`` serialises with it)."""

        def create() -> None:
            # A failure is raised again, with its message, by the first encode that needs the session.
            with contextlib.suppress(ModelError):
                self.session("visual")

        if "visual" not in self._sessions and self._prefetch is None:
            self._prefetch = threading.Thread(target=create, name="glimpse-onnx-load", daemon=True)
            self._prefetch.start()

    @property
    def tokenizer(self) -> TextTokenizer:
        from glimpse.tokenizer import TextTokenizer

        with self._lock:
            if self._tokenizer is None:
                info = self.spec.extra.get("onnx", {})
                self._tokenizer = TextTokenizer(
                    self.files["tokenizer"],
                    context_length=self.spec.context_length,
                    padding=self.spec.text_padding,
                    pad_id=info.get("pad_id"),
                    pad_token=info.get("pad_token"),
                    padding_side=info.get("padding_side", "right"),
                )
            return self._tokenizer

    # -- backend hooks -------------------------------------------------------------------------------
    def _pieces(self, part: str, session: Any, n: int) -> int:
        """How many items one run takes: the graph's fixed batch, else an even share per parallel worker."""
        fixed = static_dim(session.get_inputs()[0], 0)
        if fixed is not None:
            return fixed
        return max(1, -(-n // self._workers.get(part, 1)))

    def _encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        session = self.session("visual")
        node = session.get_inputs()[0]
        if takes_raw_pixels(node):  # the graph normalises itself: feed it the RGB the preprocessing resized
            pixels, dtype = raw_pixels(np.asarray(pixels, np.float32), self.spec.preprocess), np.uint8
        else:
            dtype = _NUMPY_TYPES.get(node.type, np.float32)
            pixels = np.ascontiguousarray(pixels, dtype)
        n = len(pixels)
        step = self._pieces("visual", session, n)
        if static_dim(node, 0) is not None and n % step:  # a fixed batch > 1: fill the last piece, drop the extra
            pixels = np.concatenate([pixels, np.zeros((step - n % step, *pixels.shape[1:]), dtype)])
        feeds = [{node.name: pixels[i : i + step]} for i in range(0, len(pixels), step)]
        return self._run("visual", session, feeds)[:n]

    def prepare_texts(self, texts: list[str], lang: str | None) -> list[str]:
        """Queries as the model's training captions looked (``Encoder.prepare_texts``: cleaned by the model's
        rule), and for language-token models the FLORES-200 code of ``lang`` (default: the locale's) prepended."""
        texts = super().prepare_texts(texts, lang)
        if self.spec.extra.get("onnx", {}).get("language_prefix") == "flores200":
            from glimpse.languages import default_language, flores_code

            prefix = flores_code(lang or default_language())
            texts = [prefix + t for t in texts]
        return texts

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        session = self.session("textual")
        with self._lock:
            self._text_uses += 1
            if self._text_uses >= 2 and self._packer is None:
                self._pack_text_session()
        nodes = session.get_inputs()
        batch = self.tokenizer.encode(texts)
        ids, mask = batch.input_ids, batch.attention_mask
        length = next((static_dim(n, 1) for n in nodes if n.name in _IDS_NAMES), None)
        if length is not None and ids.shape[1] != length:
            if ids.shape[1] > length:
                raise ModelError(f"the text graph {self.files['textual']} takes {length} tokens but the tokenizer "
                                 f"gives {ids.shape[1]}; fix text_cfg.context_length in config.json")
            ids = np.pad(ids, ((0, 0), (0, length - ids.shape[1])), constant_values=self.tokenizer.pad_id)
            mask = np.pad(mask, ((0, 0), (0, length - mask.shape[1])))
        columns: dict[str, np.ndarray] = {}
        for node in nodes:
            dtype = _NUMPY_TYPES.get(node.type, np.int64)
            if node.name == "attention_mask":
                columns[node.name] = mask.astype(dtype, copy=False)
            elif node.name == "token_type_ids":
                columns[node.name] = np.zeros_like(ids, dtype=dtype)
            else:  # check_graph admitted only ids besides those two
                columns[node.name] = ids.astype(dtype, copy=False)
        n = len(texts)
        step = self._pieces("textual", session, n)
        if static_dim(nodes[0], 0) is not None and n % step:
            columns = {name: np.concatenate([col, np.repeat(col[-1:], step - n % step, axis=0)])
                       for name, col in columns.items()}
        rows = len(columns[nodes[0].name])
        feeds = [{name: col[i : i + step] for name, col in columns.items()} for i in range(0, rows, step)]
        if self._cut:  # positions after the last end-of-text token of a piece change nothing: not fed
            real = np.concatenate([mask, np.repeat(mask[-1:], rows - n, axis=0)]).sum(1)
            feeds = [{name: col[:, : max(1, int(real[i : i + step].max()))] for name, col in feed.items()}
                     for i, feed in zip(range(0, rows, step), feeds, strict=True)]
        return self._run("textual", session, feeds)[:n]

    def close(self) -> None:
        """Drop the sessions so their memory can be freed."""
        for thread in (self._prefetch, self._packer):
            if thread is not None:
                thread.join()  # never free a session while it is being built
        with self._lock:
            self._sessions.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
