"""The ONNX backend: onnxruntime + tokenizers + numpy only (no torch, no transformers, ever).

A model directory in ONNX form names its files in ``spec.extra["onnx"]`` (see :func:`onnx_files`):
``glimpse export`` writes ``visual.onnx``, ``textual.onnx`` and ``tokenizer.json`` next to ``spec.json``;
an immich-style directory (``glimpse.encoders.immich``) points at ``visual/model.onnx`` etc. Each tower's
session is created on first use, so a text search never loads the image tower.

Threads: onnxruntime's intra-op pool gets ``threads`` threads (default: every core). Its workers do not
spin while idle, so the decode threads of the indexer get the cores whenever the encoder waits for them.
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
    from glimpse.spec import ModelSpec
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


def make_session(path: Path, *, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` tuned for throughput on ``device``."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"ONNX file {path} is missing; re-export the model with `glimpse export`")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning workers would steal the cores the JPEG decode threads need between encoder batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
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
        self._tokenizer: TextTokenizer | None = None
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None

    # -- lazy resources ------------------------------------------------------------------------------
    def session(self, part: str) -> Any:
        """The onnxruntime session of ``part`` (``"visual"`` or ``"textual"``), created on first use."""
        with self._lock:
            if part not in self._sessions:
                self._sessions[part] = make_session(self.files[part], device=self.device, threads=self.threads)
            return self._sessions[part]

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
                )
            return self._tokenizer

    # -- backend hooks -------------------------------------------------------------------------------
    def _encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        session = self.session("visual")
        node = session.get_inputs()[0]
        dtype = _NUMPY_TYPES.get(node.type, np.float32)
        (features,) = session.run([session.get_outputs()[0].name], {node.name: np.ascontiguousarray(pixels, dtype)})
        return np.asarray(features, dtype=np.float32)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        session = self.session("textual")
        batch = self.tokenizer.encode(texts)
        feeds: dict[str, np.ndarray] = {}
        for node in session.get_inputs():
            dtype = _NUMPY_TYPES.get(node.type, np.int64)
            if node.name == "attention_mask":
                feeds[node.name] = batch.attention_mask.astype(dtype, copy=False)
            elif node.name in _IDS_NAMES:
                feeds[node.name] = batch.input_ids.astype(dtype, copy=False)
            elif node.name == "token_type_ids":
                feeds[node.name] = np.zeros_like(batch.input_ids, dtype=dtype)
            else:
                raise ModelError(
                    f"the text graph {self.files['textual']} has an input {node.name!r} glimpse does not know; "
                    f"expected input_ids/text, attention_mask, token_type_ids"
                )
        (features,) = session.run([session.get_outputs()[0].name], feeds)
        return np.asarray(features, dtype=np.float32)

    def close(self) -> None:
        """Drop the sessions so their memory can be freed."""
        if self._prefetch is not None:
            self._prefetch.join()  # never free a session while it is being built
        with self._lock:
            self._sessions.clear()
