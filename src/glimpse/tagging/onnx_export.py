"""RAM / RAM++ -> ONNX: the image -> logits graph, checked against torch before anything is written.

``export_ram(checkpoint, out)`` writes into ``out`` (read by ``glimpse.tagging.ram_onnx.OnnxRamTagger``)::

    ram.onnx         float32[batch, 3, S, S] pixels -> float32[batch, C] logits
    ram.json         variant, backbone, image size, classes, precision, the tag source
    ram_tag_list*.txt  the checkpoint's tag files (the ones found next to it or given)
    parity.json      per generated image: max |logit difference| and whether the tag sets are identical

Parity (on ``glimpse.encoders.parity.generated_images`` preprocessed like RAM, plus the user's images):

* fp32 must give identical tag sets at the per-class thresholds and logits within ``FP32_LOGIT_TOLERANCE``;
  its tags are stored under the checkpoint's own source, so a library tagged with torch stays consistent;
* int8 (dynamic, weight MatMuls) must keep ``INT8_TAG_AGREEMENT`` of the torch tags (micro F1 between the
  two tag sets); it gets its own source (``…-int8``) because a few borderline tags can flip.

Nothing is written when parity fails (``ParityError``; the report is kept as ``<out>.parity-failed.json``).
This module imports torch (lazily); running the export does not need it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from glimpse.encoders.export import OPSET, prepare_out
from glimpse.errors import ModelError, ParityError, UserInputError
from glimpse.tagging.base import select
from glimpse.tagging.ram import TAG_LIST, TAG_LIST_CHINESE, TAG_THRESHOLDS
from glimpse.tagging.ram_onnx import META_FILE, ONNX_FILE

if TYPE_CHECKING:
    from PIL import Image

    from glimpse.tagging.ram import RamTagger
    from glimpse.tagging.ram_model import RamModel

Precision = Literal["fp32", "int8"]
# In logit units: 0.01 moves a probability by at most 0.0025. Summation order alone (onnxruntime's kernels vs
# torch's, or torch batched vs one image) moves logits of small random-weight test models by up to ~4e-3.
FP32_LOGIT_TOLERANCE = 1e-2
INT8_TAG_AGREEMENT = 0.95
PARITY_FILE = "parity.json"


def export_graph(model: RamModel, path: Path, *, opset: int = OPSET) -> Path:
    """Write ``model``'s closed-set pixels -> logits graph (dynamic batch) to ``path``."""
    import torch

    if model.open_embed.shape[0]:
        raise UserInputError("the ONNX export covers the closed vocabulary; drop the open-set tags first")
    size = model.config.swin.image_size
    pixels = torch.zeros((2, 3, size, size), dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python-side shape arithmetic of the sample input; parity is the proof.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model.eval(), (pixels,), str(path), dynamo=False, opset_version=opset,
                              input_names=["pixel_values"], output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as exc:  # the exporter raises many kinds; the user needs one message
            raise ModelError(f"torch.onnx.export of the RAM model failed ({type(exc).__name__}: {exc})") from exc
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8 of the weight MatMuls (per channel), with the project's CLIP-export quantiser."""
    from glimpse.encoders.quantize import INT8_LADDER, quantize_dynamic_tower

    config = next(c for c in INT8_LADDER if c.name == "matmul-per-channel")
    return quantize_dynamic_tower(src, dst, config)


def tag_agreement(reference: list[set[str]], candidate: list[set[str]]) -> float:
    """Micro F1 between two lists of tag sets (1.0 when both are empty everywhere)."""
    common = sum(len(a & b) for a, b in zip(reference, candidate, strict=True))
    total = sum(len(a) + len(b) for a, b in zip(reference, candidate, strict=True))
    return 1.0 if total == 0 else 2 * common / total


def parity_report(tagger: RamTagger, session_logits: np.ndarray, torch_logits: np.ndarray,
                  names: Sequence[str], precision: Precision) -> dict[str, Any]:
    """Compare ONNX and torch logits ``float32[n, C]`` of the same pixels: per-sample diff and tag sets."""
    from glimpse.tagging.base import sigmoid

    ref = [{t.name for t in row} for row in select(sigmoid(torch_logits), tagger.vocab)]
    got = [{t.name for t in row} for row in select(sigmoid(session_logits), tagger.vocab)]
    diff = np.abs(session_logits.astype(np.float64) - torch_logits).max(axis=1)
    agreement = tag_agreement(ref, got)
    identical = [a == b for a, b in zip(ref, got, strict=True)]
    if precision == "fp32":
        passed = all(identical) and float(diff.max()) <= FP32_LOGIT_TOLERANCE
        rule = f"identical tags and max |logit diff| <= {FP32_LOGIT_TOLERANCE}"
    else:
        passed = agreement >= INT8_TAG_AGREEMENT
        rule = f"tag agreement (micro F1) >= {INT8_TAG_AGREEMENT}"
    return {
        "precision": precision, "rule": rule, "passed": bool(passed),
        "max_abs_logit_diff": float(diff.max()), "tag_agreement": agreement,
        "identical_tag_sets": int(sum(identical)), "samples": len(identical),
        "per_sample": [{"sample": n, "max_abs_logit_diff": float(d), "identical": i,
                        "torch_tags": len(a), "onnx_tags": len(b)}
                       for n, d, i, a, b in zip(names, diff, identical, ref, got, strict=True)],
    }


def export_ram(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, precision: Precision = "fp32",
               tag_list: str | None = None, chinese_list: str | None = None, thresholds: str | None = None,
               images: Sequence[Image.Image] = (), image_names: Sequence[str] = ()) -> dict[str, Any]:
    """Export a RAM / RAM++ checkpoint to ONNX in ``out`` (see the module docstring); returns the parity report."""
    from glimpse.encoders.onnx import make_session
    from glimpse.encoders.parity import generated_images
    from glimpse.preprocess import preprocess_batch
    from glimpse.tagging.ram import RamTagger

    if precision not in ("fp32", "int8"):
        raise UserInputError(f"precision {precision!r}: expected fp32 or int8")
    out = Path(out).expanduser().resolve()
    prepare_out(out)
    tagger = RamTagger(checkpoint, tag_list=tag_list, chinese_list=chinese_list, thresholds=thresholds)
    generated = generated_images()
    samples = generated + list(images)
    names = [f"generated-{i}" for i in range(len(generated))]
    names += list(image_names) if image_names else [f"image-{i}" for i in range(len(images))]
    pixels = preprocess_batch(samples, tagger.preprocess)
    torch_logits = tagger.logits(pixels)

    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        fp32 = export_graph(tagger.model, work / "fp32.onnx")
        if precision == "int8":
            quantize_int8(fp32, work / ONNX_FILE)
            fp32.unlink()
        else:
            os.replace(fp32, work / ONNX_FILE)
        session = make_session(work / ONNX_FILE)
        onnx_logits = np.concatenate([session.run(None, {"pixel_values": pixels[i : i + 8]})[0]
                                      for i in range(0, len(pixels), 8)])
        del session
        report = parity_report(tagger, onnx_logits, torch_logits, names, precision)
        report["checkpoint"] = str(Path(checkpoint).expanduser())
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        if not report["passed"]:
            out.with_name(out.name + ".parity-failed.json").write_text(text, encoding="utf-8")
            raise ParityError(f"the {precision} ONNX export does not match torch ({report['rule']} failed: max "
                              f"|diff| {report['max_abs_logit_diff']:.2e}, tag agreement "
                              f"{report['tag_agreement']:.4f}); nothing was written — try fp32 or report the model")
        (work / PARITY_FILE).write_text(text, encoding="utf-8")
        source = tagger.source if precision == "fp32" else f"{tagger.source}-int8"
        meta = {**tagger.report.to_dict(), "precision": precision, "source": source, "opset": OPSET}
        (work / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        given = {TAG_LIST: tag_list, TAG_LIST_CHINESE: chinese_list, TAG_THRESHOLDS: thresholds}
        for name, path in given.items():
            src = Path(path).expanduser() if path else tagger.checkpoint.parent / name
            if src.is_file():
                shutil.copyfile(src, work / name)
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"directory": str(out), **meta, "parity": {k: v for k, v in report.items() if k != "per_sample"}}
