"""torch -> ONNX export: files, spec keys, parity against torch, int8/fp16, loud failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glimpse.encoders.export import export_model, export_towers
from glimpse.encoders.parity import PARITY_TEXTS, THRESHOLDS, check, generated_images, measure
from glimpse.errors import ParityError, UserInputError
from glimpse.registry import load_encoder, load_spec


@pytest.fixture(scope="module")
def clip_fp32(tiny_clip, tmp_path_factory) -> Path:
    return export_model(str(tiny_clip), tmp_path_factory.mktemp("export") / "clip-onnx").directory


def test_export_writes_files_spec_and_parity(tiny_clip, clip_fp32):
    names = {p.name for p in clip_fp32.iterdir()}
    assert {"visual.onnx", "textual.onnx", "tokenizer.json", "spec.json", "parity.json"} <= names
    spec, source = load_spec(str(clip_fp32)), load_spec(str(tiny_clip))
    assert spec.runtime == "onnx"
    assert spec.key == source.key  # fp32 vectors are interchangeable with torch's
    assert (spec.dim, spec.preprocess, spec.context_length) == (source.dim, source.preprocess, source.context_length)
    report = json.loads((clip_fp32 / "parity.json").read_text(encoding="utf-8"))
    assert report["passed"] is True and report["precision"] == "fp32"
    assert len(report["image"]["cosine"]) == 10 and len(report["text"]["cosine"]) == len(PARITY_TEXTS)
    assert report["image"]["min_cosine"] >= 0.9999 and report["text"]["min_cosine"] >= 0.9999
    assert report["tokenizer_mismatches"] == []


@pytest.mark.parametrize("graph", ["visual.onnx", "textual.onnx"])
def test_export_keeps_weights_as_external_data(clip_fp32, graph):
    """Weights live in ``<graph>.data`` (memory-mapped by onnxruntime), readable by anyone who can read the graph."""
    import onnx

    model = onnx.load(str(clip_fp32 / graph), load_external_data=False)
    big = [t for t in model.graph.initializer if np.prod(t.dims) * 4 > 4096]
    assert big and all(t.data_location == onnx.TensorProto.EXTERNAL for t in big)
    assert {e.value for t in big for e in t.external_data if e.key == "location"} == {f"{graph}.data"}
    data = clip_fp32 / f"{graph}.data"
    assert data.stat().st_mode & 0o777 == (clip_fp32 / graph).stat().st_mode & 0o777


def test_exported_encoder_matches_torch_on_fresh_inputs(tiny_clip, clip_fp32):
    torch_enc, onnx_enc = load_encoder(str(tiny_clip)), load_encoder(str(clip_fp32))
    assert type(onnx_enc).__name__ == "OnnxEncoder"
    images = generated_images(7, seed=42)  # not the export's own sample set; batch size 7 tests the dynamic axis
    np.testing.assert_allclose(onnx_enc.encode_images(images), torch_enc.encode_images(images), atol=2e-5)
    texts = ["a dog", "a photo of a red car on the beach", "一只猫", ""]
    np.testing.assert_allclose(onnx_enc.encode_texts(texts), torch_enc.encode_texts(texts), atol=2e-5)


@pytest.mark.parametrize("factory", ["make_tiny_chinese_clip", "make_tiny_siglip"])
def test_export_other_families(factory, tmp_path):
    import tiny_models

    src = getattr(tiny_models, factory)(tmp_path / "src")
    result = export_model(str(src), tmp_path / "onnx")
    assert result.report.passed and result.report.tokenizer_mismatches == []
    spec = load_spec(str(tmp_path / "onnx"))
    assert spec.family == load_spec(str(src)).family
    texts = ["一只猫在海滩上", "A Dog, on the BEACH!!", "a " * 100]
    np.testing.assert_allclose(load_encoder(str(tmp_path / "onnx")).encode_texts(texts),
                               load_encoder(str(src)).encode_texts(texts), atol=2e-5)


def test_int8_export_has_own_key_and_keeps_parity(tiny_clip, tmp_path):
    result = export_model(str(tiny_clip), tmp_path / "int8", precision="int8")
    source = load_spec(str(tiny_clip))
    assert result.spec.key.startswith(source.key + "-int8-")
    assert result.report.image.min_cosine >= THRESHOLDS["int8"]
    recipe = json.loads((tmp_path / "int8" / "spec.json").read_text())["extra"]["onnx"]["recipe"]
    assert {"visual", "textual"} <= set(recipe) and recipe["visual"]["chosen"]["name"]
    # Real quantisation happened: the int8 graph holds integer weights.
    import onnx

    graph = onnx.load(str(tmp_path / "int8" / "visual.onnx")).graph
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    images = generated_images(4, seed=5)
    cos = np.sum(load_encoder(str(tmp_path / "int8")).encode_images(images)
                 * load_encoder(str(tiny_clip)).encode_images(images), axis=1)
    assert cos.min() >= 0.99


def test_int8_static_calibrated_on_user_images(tiny_clip, tmp_path):
    from conftest import make_photos

    make_photos(tmp_path / "calib", 6)
    result = export_model(str(tiny_clip), tmp_path / "int8s", precision="int8", calibrate=tmp_path / "calib")
    tried = result.report.notes["recipe"]["visual"]["tried"]
    assert tried[0]["static"] is True  # static recipes are tried first when calibration images are given
    assert result.report.passed and len(result.report.image.samples) == 10 + 6


def test_fp16_export(tiny_clip, tmp_path):
    result = export_model(str(tiny_clip), tmp_path / "fp16", precision="fp16")
    assert result.report.passed and result.report.image.min_cosine >= THRESHOLDS["fp16"]
    assert result.spec.key.startswith(load_spec(str(tiny_clip)).key + "-fp16-")


def test_export_fails_loudly_when_graphs_do_not_match(tiny_clip, tmp_path, monkeypatch):
    """A graph computing something else (another checkpoint's weights) must never be written."""
    import glimpse.encoders.export as export_mod
    from tiny_models import make_tiny_clip

    other = load_encoder(str(make_tiny_clip(tmp_path / "other", seed=7)))
    monkeypatch.setattr(export_mod, "export_towers", lambda _enc, directory: export_towers(other, directory))
    with pytest.raises(ParityError, match="does not match torch"):
        export_model(str(tiny_clip), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    failed = json.loads((tmp_path / "bad.parity-failed.json").read_text(encoding="utf-8"))
    assert failed["passed"] is False and failed["image"]["min_cosine"] < 0.9999
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad.partial")]


def test_parity_check_uses_the_threshold(tiny_clip, clip_fp32):
    report = measure(load_encoder(str(tiny_clip)), load_encoder(str(clip_fp32)), "fp32")
    check(report)  # passes
    report.threshold = 1.0000001  # above any real cosine: the same data must now fail
    with pytest.raises(ParityError):
        check(report)


def test_export_refuses_bad_requests(tiny_clip, clip_fp32, tmp_path):
    with pytest.raises(UserInputError, match="not empty"):
        export_model(str(tiny_clip), clip_fp32)
    with pytest.raises(UserInputError, match="already an ONNX model"):
        export_model(str(clip_fp32), tmp_path / "again")
    with pytest.raises(UserInputError, match="--int8"):
        export_model(str(tiny_clip), tmp_path / "x", calibrate=tmp_path)
    with pytest.raises(UserInputError, match="no readable images"):
        (tmp_path / "empty").mkdir()
        export_model(str(tiny_clip), tmp_path / "y", precision="int8", calibrate=tmp_path / "empty")
