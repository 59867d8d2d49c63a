"""Model loading, specs and parity with transformers' own processors and models (tiny random checkpoints)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from glimpse import checkpoints as checkpoint_reader  # noqa: E402
from glimpse.errors import ModelError, ModelNotFoundError  # noqa: E402
from glimpse.preprocess import preprocess_batch, preprocess_image  # noqa: E402
from glimpse.registry import (  # noqa: E402
    DEFAULT_MODEL,
    list_models,
    load_encoder,
    load_spec,
    resolve_model_dir,
    spec_from_checkpoint,
)
from glimpse.spec import ModelSpec, Preprocess  # noqa: E402
from tiny_models import (  # noqa: E402 - after the importorskip guards
    make_tiny_chinese_clip,
    make_tiny_clip,
    make_tiny_siglip,
)

# preprocessor_config.json of openai/clip-vit-base-patch32 (the legacy format every openai/clip-* ships).
OPENAI_PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}

TOLERANCE = 1e-5
FAMILIES = ["clip", "chinese_clip", "siglip"]
MODEL_CLASSES = {"clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel", "siglip": "SiglipModel"}
PROCESSOR_CLASSES = {
    "clip": "CLIPImageProcessorPil",
    "chinese_clip": "ChineseCLIPImageProcessorPil",
    "siglip": "SiglipImageProcessorPil",
}
TEXTS = [
    "a photo of a dog",
    "A RED car on the beach!",
    "一只猫的照片",
    "红色汽车 on the beach",
    "",
    # Far past every context length (CLIP 77, tiny BERT/SigLIP 64): must be truncated, not fail.
    " ".join(["a photo of a green tree with a blue sky and a red car"] * 30),
]


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "clip": make_tiny_clip(root / "clip"),
        "chinese_clip": make_tiny_chinese_clip(root / "chinese_clip"),
        "siglip": make_tiny_siglip(root / "siglip"),
    }


def checkpoint(checkpoints: dict[str, Path], family: str) -> Path:
    return checkpoints[family]


def _scene(width: int, height: int, seed: int) -> Image.Image:
    """A synthetic photo-like RGB image: gradient, shapes and noise (smooth and sharp content)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            255 * xx / max(width - 1, 1),
            255 * yy / max(height - 1, 1),
            127 + 100 * np.sin((xx + yy) / 7.0),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0, 20, size=base.shape)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(1, width + 1)), y0 + int(rng.integers(1, height + 1))
        draw.ellipse((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    gray = np.clip(np.random.default_rng(9).normal(120, 50, (60, 80)), 0, 255).astype(np.uint8)
    return [
        _scene(500, 300, 1),  # landscape
        _scene(31, 47, 2),  # smaller than the crop: upscaled
        _scene(224, 224, 3),  # square
        _scene(1000, 60, 4),  # very wide
        _scene(45, 400, 5),  # very tall
        Image.fromarray(gray, "L").convert("RGB"),  # grayscale, as the decoder hands it over
        _scene(32, 32, 6),  # exactly the tiny model's input size
    ]


def _reference_image_embeddings(directory: Path, family: str, pictures: list[Image.Image]) -> np.ndarray:
    processor = getattr(transformers, PROCESSOR_CLASSES[family]).from_pretrained(directory)
    model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(directory).eval()
    pixels = processor(images=pictures, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        out = model.get_image_features(pixel_values=pixels)
    features = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def _reference_text_embeddings(directory: Path, family: str, texts: list[str]) -> np.ndarray:
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(directory).eval()
    config = model.config.text_config
    if family == "siglip":
        # As the SigLIP model card says: pad to max_length; and, as trained (big_vision, open_clip),
        # without an attention mask.
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        inputs = {"input_ids": encoded["input_ids"]}
    else:
        inputs = dict(
            tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=config.max_position_embeddings,
                return_tensors="pt",
            )
        )
    with torch.inference_mode():
        out = model.get_text_features(**inputs)
    features = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


# -- parity ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_preprocess_matches_transformers_processor_exactly(checkpoints, images, family):
    directory = checkpoint(checkpoints, family)
    spec = spec_from_checkpoint(directory)
    processor = getattr(transformers, PROCESSOR_CLASSES[family]).from_pretrained(directory)
    reference = processor(images=images, return_tensors="np")["pixel_values"]
    ours = preprocess_batch(images, spec.preprocess)
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape == (len(images), 3, 32, 32)
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(preprocess_image(images[0], spec.preprocess), reference[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_image_embeddings_match_transformers(checkpoints, images, family):
    directory = checkpoint(checkpoints, family)
    encoder = load_encoder(directory)
    ours = encoder.encode_images(images)
    reference = _reference_image_embeddings(directory, family, images)
    assert ours.shape == (len(images), encoder.dim)
    assert ours.dtype == np.float32
    diff = float(np.abs(ours - reference).max())
    print(f"{family} image max abs diff {diff:.3g}")
    assert diff <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Different pictures must give different embeddings (the tiny model is not degenerate).
    similarity = ours @ ours.T
    assert similarity[np.triu_indices(len(images), 1)].max() < 0.9999
    assert encoder.images_encoded == len(images)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_embeddings_match_transformers(checkpoints, family):
    directory = checkpoint(checkpoints, family)
    encoder = load_encoder(directory)
    ours = encoder.encode_texts(TEXTS)
    reference = _reference_text_embeddings(directory, family, TEXTS)
    diff = float(np.abs(ours - reference).max())
    print(f"{family} text max abs diff {diff:.3g}")
    assert ours.shape == (len(TEXTS), encoder.dim)
    assert diff <= TOLERANCE
    # English and Chinese texts differ by far more than the tolerance (the parity check is meaningful).
    assert np.abs(ours[0] - ours[2]).max() > 100 * TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_do_not_depend_on_batching(checkpoints, images, family):
    directory = checkpoint(checkpoints, family)
    whole = load_encoder(directory, batch_size=32)
    small = load_encoder(directory, batch_size=2)
    np.testing.assert_allclose(small.encode_images(images), whole.encode_images(images), atol=TOLERANCE)
    np.testing.assert_allclose(small.encode_texts(TEXTS), whole.encode_texts(TEXTS), atol=TOLERANCE)


def test_long_text_is_truncated_to_the_context_length(checkpoints):
    directory = checkpoint(checkpoints, "chinese_clip")
    encoder = load_encoder(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    long_text = TEXTS[-1]
    ids = tokenizer(long_text, truncation=True, max_length=encoder.spec.context_length)["input_ids"]
    assert len(ids) == encoder.spec.context_length == 64
    # The embedding of the long text is the embedding of what fits (minus the [SEP] the tokenizer re-adds).
    kept = tokenizer.decode(ids[1:-1])
    np.testing.assert_allclose(encoder.encode_texts([long_text]), encoder.encode_texts([kept]), atol=TOLERANCE)


# -- specs -------------------------------------------------------------------------------------------------
def test_spec_from_checkpoint_reads_the_checkpoint(checkpoints):
    expected = {
        # family: (dim, context_length, padding, resize, crop, mean)
        "clip": (16, 77, "longest", "shortest", True, (0.48145466, 0.4578275, 0.40821073)),
        "chinese_clip": (16, 64, "longest", "squash", False, (0.48145466, 0.4578275, 0.40821073)),
        "siglip": (32, 64, "max_length", "squash", False, (0.5, 0.5, 0.5)),
    }
    for family, directory in checkpoints.items():
        spec = spec_from_checkpoint(directory)
        dim, context, padding, resize, crop, mean = expected[family]
        assert spec.family == family
        assert spec.runtime == "torch"
        assert (spec.dim, spec.context_length, spec.text_padding) == (dim, context, padding)
        pre = spec.preprocess
        assert (pre.height, pre.width, pre.resize, pre.crop, pre.mean) == (32, 32, resize, crop, mean)
        assert pre.interpolation == "bicubic"
        assert pre.shortest_edge == (32 if resize == "shortest" else None)
        assert spec.source == str(directory.resolve())
        assert spec.key.startswith(f"{directory.name.replace('_', '-')}-")
        model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(directory)
        assert spec.logit_scale == pytest.approx(math.exp(model.logit_scale.item()), rel=1e-6)
        if family == "siglip":
            assert spec.logit_bias == pytest.approx(model.logit_bias.item(), rel=1e-6)
        else:
            assert spec.logit_bias is None
        assert spec.languages == (("zh", "en") if family == "chinese_clip" else ("en",))


def test_spec_json_round_trip(checkpoints, tmp_path):
    directory = shutil.copytree(checkpoint(checkpoints, "siglip"), tmp_path / "model")
    spec = spec_from_checkpoint(directory, name="my-siglip")
    assert spec.name == "my-siglip"
    assert spec.key.startswith("my-siglip-")
    spec.save(directory)
    assert ModelSpec.load(directory) == spec
    # load_spec prefers spec.json, and points source at where the directory is now.
    moved = shutil.move(directory, tmp_path / "moved")
    loaded = load_spec(str(moved))
    assert loaded.key == spec.key
    assert loaded.preprocess == spec.preprocess
    assert loaded.source == str(Path(moved).resolve())
    np.testing.assert_allclose(
        load_encoder(loaded).encode_texts(["a dog"]),
        load_encoder(str(moved)).encode_texts(["a dog"]),
        atol=0,
    )


def test_key_identifies_the_weights(tmp_path):
    first = spec_from_checkpoint(make_tiny_chinese_clip(tmp_path / "a", seed=0), name="tiny")
    again = spec_from_checkpoint(make_tiny_chinese_clip(tmp_path / "b", seed=0), name="tiny")
    other = spec_from_checkpoint(make_tiny_chinese_clip(tmp_path / "c", seed=1), name="tiny")
    assert first.key == again.key  # same weights in another directory: same key
    assert first.key != other.key  # same name and config, other weights: other key
    assert first.key.startswith("tiny-") and len(first.key) == len("tiny-") + 10


def test_load_spec_names_a_hub_checkpoint_by_its_name(checkpoints, tmp_path, monkeypatch):
    """A model in the HF cache resolves offline, and its spec carries the registry name and languages."""
    source = checkpoint(checkpoints, "chinese_clip")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--OFA-Sys--chinese-clip-vit-base-patch16"
    snapshot = shutil.copytree(source, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_dir("OFA-Sys/chinese-clip-vit-base-patch16") == snapshot
    spec = load_spec("OFA-Sys/chinese-clip-vit-base-patch16")
    assert spec.name == "OFA-Sys/chinese-clip-vit-base-patch16"
    assert spec.key.startswith("ofa-sys-chinese-clip-vit-base-patch16-")
    assert spec.revision == commit
    assert spec.languages == ("zh", "en")
    assert spec.extra["repo_id"] == "OFA-Sys/chinese-clip-vit-base-patch16"


# -- registry and resolution ----------------------------------------------------------------------------
def test_registry_lists_the_builtin_models():
    names = [entry.name for entry in list_models()]
    assert names[0] == DEFAULT_MODEL == "immich-app/ViT-B-32__openai"  # torch-free: the default is ONNX
    assert set(names) >= {
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-base-patch16",
        "openai/clip-vit-large-patch14",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        "OFA-Sys/chinese-clip-vit-base-patch16",
        "google/siglip-base-patch16-224",
    }
    by_name = {entry.name: entry for entry in list_models()}
    assert by_name["OFA-Sys/chinese-clip-vit-base-patch16"].languages == ("zh", "en")
    assert by_name["google/siglip-base-patch16-224"].family == "siglip"
    assert by_name["openai/clip-vit-large-patch14"].dim == 768


@pytest.mark.parametrize("name", ["glimpse-tests/no-such-model", "openai/clip-vit-base-patch32"])
def test_resolve_offline_miss_says_how_to_get_the_model(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model_dir(name)
    message = str(info.value)
    assert name in message
    assert "HF_HUB_OFFLINE" in message
    assert f"huggingface-cli download {name}" in message
    assert "--model DIR" in message and "HF_HOME" in message


def test_resolve_rejects_what_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a model checkpoint"):
        resolve_model_dir(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="built-in models"):
        resolve_model_dir("no-such-model")


def test_resolve_local_directory_wins(checkpoints):
    directory = checkpoint(checkpoints, "siglip")
    assert resolve_model_dir(str(directory)) == directory.resolve()


def test_onnx_spec_without_onnx_files_is_a_model_error(checkpoints):
    # A spec that claims the ONNX runtime must not fall back to torch silently when the graphs are missing.
    spec = spec_from_checkpoint(checkpoint(checkpoints, "siglip"))
    onnx_spec = ModelSpec.from_dict({**spec.to_dict(), "runtime": "onnx"})
    with pytest.raises(ModelError, match=r"\.onnx"):
        load_encoder(onnx_spec).encode_texts(["a cat"])


def test_unsupported_checkpoint_is_a_model_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="supports model_type"):
        spec_from_checkpoint(tmp_path)


def test_the_family_table_covers_the_registry_and_the_parity_families():
    from glimpse.families import FAMILIES as TABLE
    from glimpse.families import family_of_model_type, family_of_open_clip, get_family

    assert {entry.family for entry in list_models()} <= set(TABLE)
    assert {name: TABLE[name].model_class for name in FAMILIES} == MODEL_CLASSES
    assert family_of_model_type("chinese_clip") is TABLE["chinese_clip"]
    assert family_of_model_type("bert") is None
    with pytest.raises(ModelError, match="unknown model family"):
        get_family("bert")
    # immich / open_clip directories have no model_type: a config key or the model's name tells
    assert family_of_open_clip({}, "ViT-B-16-SigLIP__webli").name == "siglip"
    assert family_of_open_clip({"init_logit_bias": -10.0}, "my-model").name == "siglip"
    assert family_of_open_clip({"embed_dim": 512}, "ViT-B-32__openai").name == "clip"


def test_importing_registry_does_not_import_torch_or_transformers():
    code = (
        "import sys, json, glimpse.registry, glimpse.preprocess; "
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


# -- preprocessing edge cases against the reference -------------------------------------------------
@pytest.mark.parametrize(
    ("processor_kwargs", "pre"),
    [
        # shortest edge smaller than the crop: the reference zero-pads before normalising
        (
            {"size": {"shortest_edge": 20}, "crop_size": {"height": 32, "width": 28}},
            Preprocess(height=32, width=28, shortest_edge=20),
        ),
        # real CLIP sizes, non-default resampling
        (
            {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}, "resample": 2},
            Preprocess(height=224, width=224, shortest_edge=224, interpolation="bilinear"),
        ),
    ],
)
def test_preprocess_edge_cases_match_reference(images, processor_kwargs, pre):
    processor = transformers.CLIPImageProcessorPil(**processor_kwargs)
    reference = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(preprocess_batch(images, pre), reference)


def test_preprocess_composites_transparency_like_the_reference():
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 10, 30, 20))
    processor = transformers.SiglipImageProcessorPil(size={"height": 16, "width": 16})
    pre = checkpoint_reader.preprocess_from_processor(processor.to_dict(), "siglip")
    np.testing.assert_array_equal(
        preprocess_image(rgba, pre), processor(images=rgba, return_tensors="np")["pixel_values"][0]
    )


def test_legacy_openai_processor_config_matches_reference(images, tmp_path):
    """openai/clip-* ship ``"size": 224, "crop_size": 224`` (ints): shortest edge 224 + 224² crop."""
    directory = tmp_path
    (directory / "preprocessor_config.json").write_text(json.dumps(OPENAI_PREPROCESSOR_CONFIG))
    config = json.loads((directory / "preprocessor_config.json").read_text())
    assert isinstance(config["size"], int)
    pre = checkpoint_reader.preprocess_from_processor(config, "clip")
    assert (pre.resize, pre.shortest_edge, pre.height, pre.width, pre.crop) == ("shortest", 224, 224, 224, True)
    processor = transformers.CLIPImageProcessorPil.from_pretrained(directory)
    reference = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(preprocess_batch(images, pre), reference)
