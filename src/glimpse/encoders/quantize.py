"""fp16 conversion and int8 quantisation of exported ONNX towers (onnxruntime's own tools).

int8 is chosen per model and per tower: :data:`INT8_LADDER` lists configurations from fastest to most
careful; export tries them in order and keeps the first whose embeddings stay within the int8 parity
threshold of torch. What makes int8 lose accuracy in ViTs is a few layers with outlier activations (the MLP
output projections ``fc2`` and the final projections), so the later rungs keep those in float.

* dynamic: weights int8 (per tensor or per output channel), activations quantised per batch at run time;
  needs no data.
* static (``calibrate``): activations' ranges measured on the user's images (QDQ format), image tower only;
  the text tower stays dynamic (there is no text calibration set).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.errors import ModelError


@dataclass(frozen=True)
class Int8Config:
    """One int8 recipe. ``exclude``: substrings of node names kept in float."""

    name: str
    per_channel: bool
    exclude: tuple[str, ...] = ()
    reduce_range: bool = False
    static: bool = False
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "per_channel": self.per_channel, "exclude": list(self.exclude),
                "reduce_range": self.reduce_range, "static": self.static}


_SENSITIVE = ("fc2", "projection", "head", "pooler")
INT8_LADDER: tuple[Int8Config, ...] = (
    Int8Config("matmul-per-tensor", per_channel=False),
    Int8Config("matmul-per-channel", per_channel=True),
    Int8Config("per-channel-keep-fc2-proj", per_channel=True, exclude=_SENSITIVE),
    Int8Config("per-channel-keep-fc2-proj-reduced", per_channel=True, exclude=_SENSITIVE, reduce_range=True),
)
STATIC_LADDER: tuple[Int8Config, ...] = (
    Int8Config("static-qdq-per-channel", per_channel=True, static=True),
    Int8Config("static-qdq-keep-fc2-proj", per_channel=True, exclude=_SENSITIVE, static=True),
)


def _matmul_nodes(path: Path, exclude: Sequence[str]) -> tuple[list[str], list[str]]:
    """Names of the MatMul/Gemm nodes with a constant weight: (to quantise, kept in float)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    constants = {init.name for init in model.graph.initializer}
    keep, skip = [], []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and any(name in constants for name in node.input):
            (skip if any(s in node.name for s in exclude) else keep).append(node.name)
    return keep, skip


def quantize_dynamic_tower(src: Path, dst: Path, config: Int8Config) -> Path:
    """int8 dynamic quantisation of the weight MatMuls of ``src`` into ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, skip = _matmul_nodes(src, config.exclude)
    try:
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=config.per_channel,
            reduce_range=config.reduce_range, op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=skip,
            extra_options={"MatMulConstBOnly": True},
        )
    except Exception as exc:  # onnxruntime's quantiser raises bare exceptions on unsupported graphs
        raise ModelError(f"int8 quantisation of {src.name} failed ({type(exc).__name__}: {exc})") from exc
    return dst


class _PixelReader:
    """onnxruntime ``CalibrationDataReader`` over preprocessed ``float32[n, 3, H, W]`` batches."""

    def __init__(self, input_name: str, batches: Callable[[], Iterator[np.ndarray]]) -> None:
        self._name = input_name
        self._it = batches()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._name: batch}


def quantize_static_tower(src: Path, dst: Path, config: Int8Config, pixels: np.ndarray) -> Path:
    """int8 static (QDQ) quantisation of the image tower ``src`` calibrated on ``pixels`` ``float32[n,3,H,W]``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if len(pixels) == 0:
        raise ModelError("static int8 needs calibration images, but none could be read")
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    _, skip = _matmul_nodes(src, config.exclude)

    def batches() -> Iterator[np.ndarray]:
        for i in range(0, len(pixels), 8):
            yield pixels[i : i + 8]

    try:
        quantize_static(
            str(src), str(dst), _PixelReader(input_name, batches), quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=skip,
            calibrate_method=CalibrationMethod.MinMax, extra_options={"MatMulConstBOnly": True},
        )
    except Exception as exc:
        raise ModelError(f"static int8 quantisation of {src.name} failed ({type(exc).__name__}: {exc})") from exc
    return dst


def convert_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights and compute, float32 inputs and outputs (so callers feed and read float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    try:
        # Ops with fp32-only CPU kernels or poor fp16 range stay fp32 (inserted Casts around them).
        converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=["Softmax", "Pow", "ReduceMean",
                                                                                    "Sqrt", "Div", "Erf"])
    except Exception as exc:
        raise ModelError(f"fp16 conversion of {src.name} failed ({type(exc).__name__}: {exc})") from exc
    onnx.save(converted, str(dst))
    return dst
