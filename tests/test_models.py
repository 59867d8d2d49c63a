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
from glimpse.errors import ModelError, ModelNotFoundError, UserInputError  # noqa: E402
from glimpse.preprocess import preprocess_batch, preprocess_image, unpack_naflex  # noqa: E402
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
    make_tiny_altclip,
    make_tiny_chinese_clip,
    make_tiny_clip,
    make_tiny_siglip,
    make_tiny_siglip2,
    make_tiny_siglip2_naflex,
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
# The tiny checkpoints (one per on-disk format) and the glimpse family each reads as: a fixed-resolution
# SigLIP2 is a SiglipModel config (model_type "siglip") with a Gemma tokenizer, as google/siglip2-*-224 ship.
MODELS = ["clip", "chinese_clip", "siglip", "siglip2", "siglip2_naflex", "altclip"]
FAMILY_OF = {"clip": "clip", "chinese_clip": "chinese_clip", "siglip": "siglip", "siglip2": "siglip",
             "siglip2_naflex": "siglip2", "altclip": "altclip"}
FAMILIES = list(dict.fromkeys(FAMILY_OF.values()))
MODEL_CLASSES = {"clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel", "siglip": "SiglipModel",
                 "siglip2": "Siglip2Model", "altclip": "AltCLIPModel"}
PROCESSOR_CLASSES = {
    "clip": "CLIPImageProcessorPil",
    "chinese_clip": "ChineseCLIPImageProcessorPil",
    "siglip": "SiglipImageProcessorPil",
    "siglip2": "SiglipImageProcessorPil",
    "siglip2_naflex": "Siglip2ImageProcessorPil",
    "altclip": "CLIPImageProcessorPil",  # AltCLIPProcessor's image processor is CLIP's
}
SIGMOID = {"siglip", "siglip2"}  # families whose text is fixed-length and unmasked (they pool the last position)
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
        "siglip2": make_tiny_siglip2(root / "siglip2"),
        "siglip2_naflex": make_tiny_siglip2_naflex(root / "siglip2_naflex"),
        "altclip": make_tiny_altclip(root / "altclip"),
    }


def checkpoint(checkpoints: dict[str, Path], model: str) -> Path:
    return checkpoints[model]


def _image_processor(directory: Path, model: str):
    return getattr(transformers, PROCESSOR_CLASSES[model]).from_pretrained(directory)


def _processor_pixels(directory: Path, model: str, pictures: list[Image.Image]) -> dict[str, np.ndarray]:
    """transformers' image processor output (NaFlex: pixel_values, pixel_attention_mask, spatial_shapes)."""
    return dict(_image_processor(directory, model)(images=pictures, return_tensors="np"))


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


def _reference_image_embeddings(directory: Path, model_name: str, pictures: list[Image.Image]) -> np.ndarray:
    model = getattr(transformers, MODEL_CLASSES[FAMILY_OF[model_name]]).from_pretrained(directory).eval()
    inputs = {k: torch.from_numpy(v) for k, v in _processor_pixels(directory, model_name, pictures).items()}
    with torch.inference_mode():
        out = model.get_image_features(**inputs)
    features = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def _reference_inputs(directory: Path, model_name: str, texts: list[str]) -> dict:
    """transformers' tokenizer output for ``texts`` as each family's model card / processor asks for it."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    if FAMILY_OF[model_name] in SIGMOID:
        # As the SigLIP / SigLIP2 model cards (and Siglip2Processor) say: pad to max_length 64; and, as
        # trained (big_vision pools the last position without masking; open_clip and immich run it so),
        # without an attention mask.
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="pt")
        return {"input_ids": encoded["input_ids"]}
    # The context length: the text tower's positions (XLM-R's start at 2) or the tokenizer's smaller limit.
    config = transformers.AutoConfig.from_pretrained(directory).text_config
    limit = min(config.max_position_embeddings - (2 if model_name == "altclip" else 0), tokenizer.model_max_length)
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"))


def _reference_text_embeddings(directory: Path, model_name: str, texts: list[str]) -> np.ndarray:
    model = getattr(transformers, MODEL_CLASSES[FAMILY_OF[model_name]]).from_pretrained(directory).eval()
    with torch.inference_mode():
        out = model.get_text_features(**_reference_inputs(directory, model_name, texts))
    features = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(features, dim=-1).numpy()


# -- parity ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_preprocess_matches_transformers_processor_exactly(checkpoints, images, model):
    directory = checkpoint(checkpoints, model)
    spec = spec_from_checkpoint(directory)
    reference = _processor_pixels(directory, model, images)
    ours = preprocess_batch(images, spec.preprocess)
    assert ours.dtype == np.float32
    assert ours.shape == (len(images), *spec.preprocess.input_shape)
    np.testing.assert_array_equal(preprocess_image(images[0], spec.preprocess), ours[0])
    if spec.preprocess.resize == "naflex":
        values, mask, shapes = unpack_naflex(ours)
        np.testing.assert_array_equal(values, reference["pixel_values"])
        np.testing.assert_array_equal(mask, reference["pixel_attention_mask"])
        np.testing.assert_array_equal(shapes, reference["spatial_shapes"])
        assert (values.dtype, mask.dtype, shapes.dtype) == (np.float32, np.int32, np.int64)
        # The sizes differ per aspect ratio, and some images fill fewer patches than the maximum (padding).
        assert len({tuple(s) for s in shapes}) >= 4 and mask.sum(axis=1).min() < mask.shape[1]
        return
    assert ours.shape == reference["pixel_values"].shape == (len(images), 3, 32, 32)
    np.testing.assert_array_equal(ours, reference["pixel_values"])


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (16, 16), (17, 15), (480, 640), (1000, 30), (5, 5000)])
def test_naflex_sizes_match_transformers(shape):
    """The NaFlex target size (the scale's binary search) on extreme and ordinary aspect ratios and patch counts."""
    from transformers.models.siglip2.image_processing_pil_siglip2 import get_image_size_for_max_num_patches

    from glimpse.preprocess import naflex_size

    for patch, patches in [(16, 256), (16, 1024), (4, 24), (14, 729)]:
        assert naflex_size(*shape, patch, patches) == get_image_size_for_max_num_patches(*shape, patch, patches)


@pytest.mark.parametrize("model", MODELS)
def test_tokens_match_transformers(checkpoints, model):
    """The ids (and the attention mask where the family feeds one) equal transformers' tokenizer output."""
    directory = checkpoint(checkpoints, model)
    encoder = load_encoder(directory)
    ours = encoder.tokenize(TEXTS)
    reference = _reference_inputs(directory, model, TEXTS)
    assert set(ours) == set(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(ours[name].numpy(), value.numpy())


@pytest.mark.parametrize("model", MODELS)
def test_image_embeddings_match_transformers(checkpoints, images, model):
    directory = checkpoint(checkpoints, model)
    encoder = load_encoder(directory)
    ours = encoder.encode_images(images)
    reference = _reference_image_embeddings(directory, model, images)
    assert ours.shape == (len(images), encoder.dim)
    assert ours.dtype == np.float32
    diff = float(np.abs(ours - reference).max())
    print(f"{model} image max abs diff {diff:.3g}")
    assert diff <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Different pictures must give different embeddings (the tiny model is not degenerate).
    similarity = ours @ ours.T
    assert similarity[np.triu_indices(len(images), 1)].max() < 0.9999
    assert encoder.images_encoded == len(images)


@pytest.mark.parametrize("model", MODELS)
def test_text_embeddings_match_transformers(checkpoints, model):
    directory = checkpoint(checkpoints, model)
    encoder = load_encoder(directory)
    ours = encoder.encode_texts(TEXTS)
    reference = _reference_text_embeddings(directory, model, TEXTS)
    diff = float(np.abs(ours - reference).max())
    print(f"{model} text max abs diff {diff:.3g}")
    assert ours.shape == (len(TEXTS), encoder.dim)
    assert diff <= TOLERANCE
    # English and Chinese texts differ by far more than the tolerance (the parity check is meaningful).
    assert np.abs(ours[0] - ours[2]).max() > 100 * TOLERANCE


@pytest.mark.parametrize("model", MODELS)
def test_embeddings_do_not_depend_on_batching(checkpoints, images, model):
    directory = checkpoint(checkpoints, model)
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
        "siglip2": (32, 64, "max_length", "squash", False, (0.5, 0.5, 0.5)),
        "siglip2_naflex": (32, 64, "max_length", "naflex", False, (0.5, 0.5, 0.5)),
        # XLM-R positions start at 2 (66 positions hold 64 tokens), the tokenizer's limit is 64 too
        "altclip": (16, 64, "longest", "shortest", True, (0.48145466, 0.4578275, 0.40821073)),
    }
    languages = {"chinese_clip": ("zh", "en"), "altclip": ("en", "zh")}
    for name, directory in checkpoints.items():
        spec = spec_from_checkpoint(directory)
        family = FAMILY_OF[name]
        dim, context, padding, resize, crop, mean = expected[name]
        assert spec.family == family
        assert spec.runtime == "torch"
        assert (spec.dim, spec.context_length, spec.text_padding) == (dim, context, padding)
        pre = spec.preprocess
        size = (16, 16) if resize == "naflex" else (32, 32)  # NaFlex: the nominal square of 24 4x4 patches
        assert (pre.height, pre.width, pre.resize, pre.crop, pre.mean) == (*size, resize, crop, mean)
        assert pre.interpolation == ("bilinear" if name.startswith("siglip2") else "bicubic")
        assert (pre.patch_size, pre.max_num_patches) == ((4, 24) if resize == "naflex" else (None, None))
        assert pre.shortest_edge == (32 if resize == "shortest" else None)
        assert spec.source == str(directory.resolve())
        assert spec.key.startswith(f"{directory.name.replace('_', '-')}-")
        model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(directory)
        assert spec.logit_scale == pytest.approx(math.exp(model.logit_scale.item()), rel=1e-6)
        if family in SIGMOID:
            assert spec.logit_bias == pytest.approx(model.logit_bias.item(), rel=1e-6)
        else:
            assert spec.logit_bias is None
        assert spec.languages == languages.get(family, ("en",))


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
    # immich's SigLIP2 towers are fixed-resolution ones: the siglip row, never NaFlex
    assert family_of_open_clip({}, "ViT-B-16-SigLIP2__webli").name == "siglip"
    assert family_of_model_type("siglip2") is TABLE["siglip2"] and family_of_model_type("altclip") is TABLE["altclip"]


@pytest.mark.parametrize("model", ["siglip2", "siglip2_naflex", "altclip"])
def test_library_indexes_and_searches_with_the_new_families(checkpoints, tmp_path, model):
    """Index + search through the Library: each image's own embedding finds it first, on every family."""
    from glimpse.library import Library
    from glimpse.settings import LibrarySettings

    photos = tmp_path / "photos"
    photos.mkdir()
    pictures = [_scene(200, 120, 11), _scene(40, 300, 12), _scene(64, 64, 13)]
    for i, picture in enumerate(pictures):
        picture.save(photos / f"p{i}.png")
    lib = Library.from_settings(LibrarySettings(tmp_path / "lib", str(checkpoint(checkpoints, model))))
    try:
        report = lib.index([photos])
        assert (report.encoded, report.failed) == (3, 0)
        hits = lib.search("a photo of a dog", k=3)
        assert sorted(Path(h.path).name for h in hits) == ["p0.png", "p1.png", "p2.png"]
        reference = _reference_image_embeddings(checkpoint(checkpoints, model), model, pictures)
        for i in range(3):
            best = lib.search_vector(reference[i], k=1)[0]
            assert Path(best.path).name == f"p{i}.png" and best.score == pytest.approx(1.0, abs=1e-4)
    finally:
        lib.close()


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


# -- ONNX export of the new families -----------------------------------------------------------------
def test_altclip_exports_to_onnx_with_parity(checkpoints, tmp_path):
    """AltCLIP needs no export rule of its own: its XLM-R tokenizer.json and two-input text graph keep parity."""
    from glimpse.encoders.export import export_model

    result = export_model(str(checkpoint(checkpoints, "altclip")), tmp_path / "onnx")
    assert result.report.passed and result.report.tokenizer_mismatches == []
    assert result.spec.extra["onnx"]["text_inputs"] == ["input_ids", "attention_mask"]
    onnx_vectors = load_encoder(str(tmp_path / "onnx")).encode_texts(TEXTS)
    np.testing.assert_allclose(onnx_vectors, load_encoder(checkpoint(checkpoints, "altclip")).encode_texts(TEXTS),
                               atol=2e-5)


def test_siglip2_exports_to_onnx_with_its_left_padding(checkpoints, tmp_path):
    """SigLIP2's Gemma tokenizer pads on the left; the torch-free tokenizer follows the export's spec."""
    from glimpse.encoders.export import export_model

    result = export_model(str(checkpoint(checkpoints, "siglip2")), tmp_path / "onnx")
    assert result.report.passed and result.report.tokenizer_mismatches == []
    assert result.spec.extra["onnx"]["padding_side"] == "left"
    onnx_encoder = load_encoder(str(tmp_path / "onnx"))
    batch = onnx_encoder.tokenizer.encode(["a", "a longer text here"])
    assert batch.attention_mask[0, -1] == 1 and batch.attention_mask[0, 0] == 0  # padded on the left
    np.testing.assert_allclose(onnx_encoder.encode_texts(TEXTS),
                               load_encoder(checkpoint(checkpoints, "siglip2")).encode_texts(TEXTS), atol=2e-5)


def test_naflex_export_is_refused_in_one_line(checkpoints, tmp_path):
    from glimpse.encoders.export import export_model

    with pytest.raises(ModelError, match="NaFlex") as info:
        export_model(str(checkpoint(checkpoints, "siglip2_naflex")), tmp_path / "onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "onnx" / "spec.json").exists()


def test_naflex_spec_round_trips_and_old_specs_still_load(checkpoints, tmp_path):
    spec = spec_from_checkpoint(checkpoint(checkpoints, "siglip2_naflex"))
    spec.save(tmp_path)
    assert ModelSpec.load(tmp_path) == spec and ModelSpec.load(tmp_path).preprocess.input_shape == (25, 48)
    old = spec_from_checkpoint(checkpoint(checkpoints, "clip")).to_dict()
    for field in ("patch_size", "max_num_patches"):  # a spec.json written before NaFlex existed
        del old["preprocess"][field]
    loaded = ModelSpec.from_dict(old)
    assert loaded.preprocess.input_shape == (3, 32, 32) and loaded.preprocess.patch_size is None
    with pytest.raises(UserInputError, match="pixels must have shape"):  # NaFlex takes its packed patches
        load_encoder(checkpoint(checkpoints, "siglip2_naflex")).encode_pixels(np.zeros((1, 3, 16, 16), np.float32))
