"""torch -> ONNX export of a model's two towers, verified against torch before anything is written.

``export_model(model, out)`` writes into ``out``::

    visual.onnx      float32[batch, 3, H, W] -> float32[batch, d]   (unnormalised image features)
    textual.onnx     int64[batch, seq] token ids (+ attention mask)  -> float32[batch, d]
    *.onnx.data      each graph's weights (ONNX external data: memory-mapped by onnxruntime)
    tokenizer.json   the checkpoint's fast tokenizer (SigLIP's SentencePiece one converted, canonicaliser included)
    spec.json        the source spec with runtime "onnx", the file names and the precision
    parity.json      per-sample cosine and max |diff| vs torch on generated images + multilingual texts

Everything is built in a hidden sibling directory and moved to ``out`` only when parity holds
(fp32 cos >= 0.9999, fp16 >= 0.999, int8 >= 0.99); otherwise a ``ParityError`` is raised and ``out``
is not created (the failing report is kept as ``<out>.parity-failed.json``).

Model keys (vectors of different keys never mix in a library): fp32 keeps the source checkpoint's key,
because its embeddings equal torch's to cos >= 0.9999, so a library indexed with torch can be searched
with the ONNX model and vice versa. fp16 and int8 get ``<key>-fp16-<hash>`` / ``<key>-int8-<hash>`` (hash
of the exported graphs): their vectors only match torch to 0.999 / 0.99, and two int8 recipes differ.

This module imports torch and transformers (lazily); the ONNX runtime path never imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import string
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from glimpse.checkpoints import legacy_key
from glimpse.encoders.parity import PARITY_TEXTS, THRESHOLDS, ParityReport, compare, generated_images
from glimpse.errors import ModelError, ParityError, UserInputError
from glimpse.families import get_family
from glimpse.spec import ModelSpec

if TYPE_CHECKING:
    from PIL import Image

    from glimpse.encoders.onnx import OnnxEncoder
    from glimpse.encoders.torch import TorchEncoder

Precision = Literal["fp32", "fp16", "int8"]
OPSET = 17
VISUAL, TEXTUAL, TOKENIZER, PARITY = "visual.onnx", "textual.onnx", "tokenizer.json", "parity.json"
MAX_CALIBRATION_IMAGES = 64


@dataclass
class ExportResult:
    """What an export produced: the directory, its spec, the parity report and the chosen recipe."""

    directory: Path
    spec: ModelSpec
    report: ParityReport
    bundle: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "key": self.spec.key, "precision": self.report.precision,
                "parity": self.report.to_dict(), "bundle": str(self.bundle) if self.bundle else None}


# -- torch -> onnx -------------------------------------------------------------------------------------
def _torch_modules(encoder: TorchEncoder, text_inputs: Sequence[str]) -> tuple[Any, Any]:
    """``torch.nn.Module`` wrappers exposing the image and text feature functions with positional inputs."""
    import torch

    from glimpse.encoders.torch import features

    model = encoder.model

    class Visual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return features(self.model.get_image_features(pixel_values=pixel_values))

    class Textual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return features(self.model.get_text_features(**dict(zip(text_inputs, tensors, strict=True))))

    return Visual().eval(), Textual().eval()


def export_towers(encoder: TorchEncoder, directory: Path, *, opset: int = OPSET) -> list[str]:
    """Write ``visual.onnx`` and ``textual.onnx`` (dynamic batch and sequence axes); returns the text inputs."""
    import warnings

    import torch

    spec = encoder.spec
    pre = spec.preprocess
    if pre.resize == "naflex":
        # Its vision graph would take three inputs (patches, patch mask, grid shape), which the ONNX encoder
        # does not feed yet.
        raise ModelError(f"ONNX export of NaFlex models (SigLIP2 Siglip2Model, {spec.name}) is not supported yet; "
                         "run it with the torch backend, or export a fixed-resolution SigLIP2 checkpoint")
    sample_texts = ["a photo of a dog on the beach at night", "a cat"]
    inputs = encoder.tokenize(sample_texts)
    # token_type_ids are all zero for one-segment text, which is also the models' default.
    names = [n for n in inputs if n != "token_type_ids"]
    visual, textual = _torch_modules(encoder, names)
    pixels = torch.zeros((2, 3, pre.height, pre.width), dtype=torch.float32)
    text_axes = {n: {0: "batch", 1: "sequence"} for n in names}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer's warnings are about Python-side shape checks of the sample inputs; parity is the proof.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(visual, (pixels,), str(directory / VISUAL), dynamo=False, opset_version=opset,
                              input_names=["pixel_values"], output_names=["image_embeds"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
            torch.onnx.export(textual, tuple(inputs[n] for n in names), str(directory / TEXTUAL), dynamo=False,
                              opset_version=opset, input_names=names, output_names=["text_embeds"],
                              dynamic_axes={**text_axes, "text_embeds": {0: "batch"}})
        except Exception as exc:  # the exporter raises many kinds; the user needs one message
            raise ModelError(f"torch.onnx.export failed for {spec.name} ({type(exc).__name__}: {exc})") from exc
    return names


def store_external(src: Path, dst: Path | None = None) -> Path:
    """Write the graph ``src`` to ``dst`` (default: in place) with its weights in ``<dst name>.data`` beside it.

    ONNX external data is what onnxruntime memory-maps: a session starts several times faster (no protobuf
    parse of hundreds of MB), and weights it does not repack, such as a text tower's token-embedding table
    (100 MB in ViT-B/32), stay on disk except for the rows a query touches. It also lifts protobuf's 2 GB
    limit for big towers. ``src`` may already use external data (torch writes it for towers over 2 GB).
    """
    import onnx

    dst = dst or src
    model = onnx.load(str(src))  # weights read into memory, so writing over src is safe
    data = dst.with_name(dst.name + ".data")
    data.unlink(missing_ok=True)  # the writer appends
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    data.chmod(dst.stat().st_mode & 0o777)  # onnx creates it owner-only; a shared model dir needs the graph's mode
    return dst


# -- tokenizer -----------------------------------------------------------------------------------------
def _siglip_tokenizer(tokenizer: Any) -> Any:
    """SigLIP's SentencePiece tokenizer as a ``tokenizers.Tokenizer``, its text canonicaliser included.

    SiglipTokenizer lower-cases, deletes ASCII punctuation, collapses whitespace and strips before
    SentencePiece, then appends ``</s>``; transformers ships no fast version of it.
    """
    from tokenizers import Regex, normalizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter

    class SiglipConverter(SpmConverter):
        def normalizer(self, proto: Any) -> Any:
            steps = [normalizers.Lowercase()] if getattr(tokenizer, "do_lower_case", True) else []
            steps += [
                normalizers.Replace(Regex("[" + re.escape(string.punctuation) + "]"), ""),
                normalizers.Replace(Regex(r"\s+"), " "),
                normalizers.Strip(),
                super().normalizer(proto),
            ]
            return normalizers.Sequence(steps)

        def post_processor(self) -> Any:
            eos = tokenizer.eos_token
            return processors.TemplateProcessing(single=["$A", eos], pair=["$A", eos, "$B", eos],
                                                 special_tokens=[(eos, tokenizer.convert_tokens_to_ids(eos))])

    return SiglipConverter(tokenizer).converted()


def tokenizer_json(encoder: TorchEncoder) -> str:
    """The checkpoint tokenizer as ``tokenizer.json`` text (fast tokenizers as they are; SigLIP converted)."""
    tokenizer = encoder.tokenizer
    if getattr(tokenizer, "is_fast", False) and hasattr(tokenizer, "backend_tokenizer"):
        return str(tokenizer.backend_tokenizer.to_str())
    if get_family(encoder.spec.family).slow_tokenizer == "siglip":
        return str(_siglip_tokenizer(tokenizer).to_str())
    try:
        from transformers.convert_slow_tokenizer import convert_slow_tokenizer

        return str(convert_slow_tokenizer(tokenizer).to_str())
    except Exception as exc:
        raise ModelError(f"cannot convert the {type(tokenizer).__name__} of {encoder.spec.name} to "
                         f"tokenizer.json ({exc})") from exc


def tokenizer_mismatches(encoder: TorchEncoder, onnx_encoder: OnnxEncoder, texts: Sequence[str]) -> list[str]:
    """Texts whose padded ids differ between the checkpoint tokenizer and our ``tokenizer.json``."""
    theirs = encoder.tokenize(list(texts))["input_ids"].numpy()
    ours = onnx_encoder.tokenizer.encode(list(texts)).input_ids
    if theirs.shape != ours.shape:
        return [f"batch shape {list(ours.shape)} != {list(theirs.shape)}"]
    return [text for text, a, b in zip(texts, theirs, ours, strict=True) if not np.array_equal(a, b)]


# -- spec ----------------------------------------------------------------------------------------------
def _files_digest(directory: Path, names: Sequence[str]) -> str:
    """sha256 over the graphs ``names`` in ``directory`` and their external weight files (``<name>.data``)."""
    digest = hashlib.sha256()
    for name in names:
        data = directory / f"{name}.data"
        for path in (directory / name, *([data] if data.exists() else [])):
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def onnx_spec(source: ModelSpec, directory: Path, encoder: TorchEncoder, precision: Precision,
              text_inputs: Sequence[str], recipe: dict[str, Any] | None = None) -> ModelSpec:
    """The spec of the export in ``directory``: runtime onnx, file names, pad id, precision and key."""
    tokenizer = encoder.tokenizer
    key = source.key
    if precision != "fp32":
        key = f"{source.key}-{precision}-{_files_digest(directory, [VISUAL, TEXTUAL])[:8]}"
    onnx_info = {"visual": VISUAL, "textual": TEXTUAL, "tokenizer": TOKENIZER, "precision": precision,
                 "pad_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
                 "text_inputs": list(text_inputs), "opset": OPSET, "recipe": recipe or {}}
    if getattr(tokenizer, "padding_side", "right") == "left":  # Gemma / SigLIP2 tokenizers
        onnx_info["padding_side"] = "left"
    if source.extra.get("clean") is not None:  # queries cleaned beyond tokenizer.json (open_clip checkpoints)
        onnx_info["clean"] = source.extra["clean"]
    exported_from = {"name": source.name, "key": source.key, "source": source.source, "revision": source.revision}
    if precision == "fp32":  # it shares the source's key, so a library keyed the old way migrates to it too
        exported_from["legacy_key"] = legacy_key(source)
    return replace(source, key=key, runtime="onnx", source=str(directory),
                   extra={**source.extra, "onnx": onnx_info, "exported_from": exported_from})


# -- calibration images ---------------------------------------------------------------------------------
def calibration_images(directory: str | Path, spec: ModelSpec, limit: int = MAX_CALIBRATION_IMAGES
                       ) -> tuple[list[Image.Image], list[str]]:
    """Up to ``limit`` decodable images under ``directory`` (sorted walk), with their names."""
    from glimpse.errors import ImageError
    from glimpse.images import is_candidate, open_image

    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UserInputError(f"--calibrate {directory}: not a directory; give a folder of your own images")
    images, names = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if len(images) >= limit:
            break
        if not is_candidate(str(path)):
            continue
        try:
            images.append(open_image(str(path), min_side=spec.preprocess.min_side).image)
            names.append(str(path.relative_to(root)))
        except ImageError:
            continue  # calibration only needs some good images; bad ones are simply not used
    if not images:
        raise UserInputError(f"--calibrate {directory}: found no readable images there")
    return images, names


# -- export --------------------------------------------------------------------------------------------
def prepare_out(out: Path) -> None:
    """Refuse an ``out`` that exists and is not an empty directory; create its parent (shared with the RAM export)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"{out} already exists and is not empty; choose a new output directory")
    out.parent.mkdir(parents=True, exist_ok=True)


def _tried(trial: dict[str, Any]) -> str:
    return f"{trial['name']}: {trial['min_cosine']:.4f}"


def _quantize_int8(work: Path, fp32: Path, torch_enc: TorchEncoder, spec: ModelSpec, images: list[Image.Image],
                   texts: Sequence[str], ref_img: np.ndarray, ref_txt: np.ndarray,
                   calib_pixels: np.ndarray | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Quantise each tower with the first recipe that keeps int8 parity; writes them into ``work``."""
    from glimpse.encoders.onnx import OnnxEncoder
    from glimpse.encoders.quantize import INT8_LADDER, STATIC_LADDER, quantize_dynamic_tower, quantize_static_tower

    threshold = THRESHOLDS["int8"]
    recipe: dict[str, Any] = {}
    for tower, filename in (("visual", VISUAL), ("textual", TEXTUAL)):
        ladder = (STATIC_LADDER + INT8_LADDER) if (tower == "visual" and calib_pixels is not None) else INT8_LADDER
        tried = []
        for config in ladder:
            candidate = work / f"candidate-{filename}"
            if config.static:
                quantize_static_tower(fp32 / filename, candidate, config, calib_pixels)  # type: ignore[arg-type]
            else:
                quantize_dynamic_tower(fp32 / filename, candidate, config)
            trial_spec = replace(spec, extra={**spec.extra, "onnx": {**spec.extra["onnx"], tower: candidate.name}})
            trial = OnnxEncoder(trial_spec, work)
            got = trial.encode_images(images) if tower == "visual" else trial.encode_texts(list(texts))
            parity = compare(ref_img if tower == "visual" else ref_txt, got, [])
            trial.close()
            tried.append({**config.to_dict(), "min_cosine": parity.min_cosine})
            log(f"int8 {tower}: {config.name} min cosine {parity.min_cosine:.5f}")
            if parity.min_cosine >= threshold:
                os.replace(candidate, work / filename)
                recipe[tower] = {"chosen": config.to_dict(), "tried": tried}
                break
        else:
            raise ParityError(
                f"int8 {tower} tower of {spec.name} stays below cosine {threshold} with every recipe "
                f"({', '.join(_tried(t) for t in tried)}); export it as fp32 or fp16"
            )
    return recipe


def export_model(
    model: str | Path,
    out: str | Path,
    *,
    precision: Precision = "fp32",
    calibrate: str | Path | None = None,
    bundle: bool = False,
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``model`` (registry name or checkpoint dir) to ONNX in ``out``, verified against torch."""
    from glimpse.encoders.onnx import OnnxEncoder
    from glimpse.encoders.parity import check
    from glimpse.preprocess import preprocess_batch
    from glimpse.registry import load_encoder, load_spec

    say = log or (lambda _msg: None)
    if precision not in THRESHOLDS:
        raise UserInputError(f"precision {precision!r}: expected one of {sorted(THRESHOLDS)}")
    if calibrate is not None and precision != "int8":
        raise UserInputError("--calibrate is for int8 static quantisation; add --int8")
    out = Path(out).expanduser().resolve()
    prepare_out(out)
    source = load_spec(str(model))
    if source.runtime != "torch":
        raise UserInputError(f"{model} is already an ONNX model; export from the original checkpoint")
    torch_enc = load_encoder(source)
    images, names = generated_images(), [f"generated-{i}" for i in range(10)]
    calib_pixels = None
    if calibrate is not None:
        calib, calib_names = calibration_images(calibrate, source)
        calib_pixels = preprocess_batch(calib, source.preprocess)
        images, names = images + calib[:16], names + calib_names[:16]
    texts = list(PARITY_TEXTS)

    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        fp32 = work / "fp32"
        fp32.mkdir()
        say(f"exporting {source.name} to ONNX (opset {OPSET})")
        text_inputs = export_towers(torch_enc, fp32)
        (fp32 / TOKENIZER).write_text(tokenizer_json(torch_enc), encoding="utf-8")
        spec = onnx_spec(source, fp32, torch_enc, "fp32", text_inputs)
        ref_img, ref_txt = torch_enc.encode_images(images), torch_enc.encode_texts(texts)

        final = work / "final"
        final.mkdir()
        shutil.copy2(fp32 / TOKENIZER, final / TOKENIZER)
        recipe: dict[str, Any] = {}
        if precision == "fp32":
            for name in (VISUAL, TEXTUAL):
                store_external(fp32 / name, final / name)
        elif precision == "fp16":
            from glimpse.encoders.quantize import convert_fp16

            for name in (VISUAL, TEXTUAL):
                store_external(convert_fp16(fp32 / name, final / name))
            recipe = {"fp16": "weights and compute fp16; Softmax/Pow/ReduceMean/Sqrt/Div/Erf kept fp32"}
        else:
            recipe = _quantize_int8(final, fp32, torch_enc, spec, images, texts, ref_img, ref_txt,
                                    calib_pixels, say)
            for name in (VISUAL, TEXTUAL):
                store_external(final / name)
        spec = onnx_spec(source, final, torch_enc, precision, text_inputs, recipe)
        onnx_enc = OnnxEncoder(spec, final)
        report = ParityReport(precision, THRESHOLDS[precision],
                              compare(ref_img, onnx_enc.encode_images(images), names),
                              compare(ref_txt, onnx_enc.encode_texts(texts), texts),
                              tokenizer_mismatches(torch_enc, onnx_enc, texts),
                              notes={"source_key": source.key, "key": spec.key, "recipe": recipe})
        onnx_enc.close()
        if not report.passed:
            failed = out.with_name(out.name + ".parity-failed.json")
            failed.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            check(report)
        for leftover in final.glob("candidate-*"):
            leftover.unlink()
        (final / PARITY).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
        spec = replace(spec, source=str(out))
        spec.save(final)
        if out.exists():
            out.rmdir()
        os.replace(final, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        torch_enc.close()
    result = ExportResult(out, spec, report)
    if bundle:
        from glimpse.bundle import write_bundle

        result.bundle = write_bundle(out, out / "bundle")
    say(f"wrote {out} (key {spec.key})")
    return result
