"""open_clip checkpoints mapped onto transformers' CLIPModel: parity with open_clip's own code, bad input.

The goldens (``tests/data/openclip_goldens.json``) are open_clip's own ``encode_image`` / ``encode_text``
outputs for a tiny random ``CLIP`` (``tests/make_openclip_goldens.py`` says how they were made); the test
rebuilds the same weights from the stored names and shapes with ``fill_state`` and writes them in the hub
layout (``open_clip_config.json`` + weights + tokenizer).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from glimpse import openclip  # noqa: E402
from glimpse.errors import ModelError, ModelNotFoundError  # noqa: E402
from glimpse.registry import load_encoder, load_spec  # noqa: E402
from tiny_models import small_clip_tokenizer, write_small_clip_tokenizer  # noqa: E402

GOLDENS = Path(__file__).parent / "data" / "openclip_goldens.json"
CONTEXT = 16
TEXTS = ["a photo of a dog", "a cat on the beach", "red"]
MODEL_CFG: dict = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": CONTEXT, "vocab_size": len(small_clip_tokenizer(CONTEXT)), "width": 32,
                 "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {"size": 32, "mode": "RGB", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
                  "interpolation": "bilinear", "resize_mode": "squash", "fill_color": 0}


def fill_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Deterministic weights for open_clip names and shapes: LayerNorm scales 1 + N(0, 0.1²), the logit
    scale log(100), everything else N(0, 0.2²), drawn in sorted-name order from PCG64 seed 0."""
    rng = np.random.default_rng(0)
    state = {}
    for name in sorted(shapes):
        values = rng.standard_normal(shapes[name]).astype(np.float32)
        if name == "logit_scale":
            values = np.full(shapes[name], math.log(100.0), dtype=np.float32)
        elif name.endswith(".weight") and name.split(".")[-2].startswith("ln_"):  # LayerNorm scales
            values = 1.0 + 0.1 * values
        else:
            values = 0.2 * values
        state[name] = torch.from_numpy(np.ascontiguousarray(values))
    return state


def pixels() -> np.ndarray:
    """``float32[2, 3, 32, 32]`` network inputs (already normalised), PCG64 seed 1."""
    return np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)


def open_clip_ids() -> np.ndarray:
    """``int64[len(TEXTS), CONTEXT]``: the small CLIP tokenizer's ids laid out as open_clip's tokenizer does
    (``[bos, ..., eos]``, then zeros)."""
    tokenizer = small_clip_tokenizer(CONTEXT)
    ids = np.zeros((len(TEXTS), CONTEXT), dtype=np.int64)
    for row, text in enumerate(TEXTS):
        tokens = tokenizer(text, truncation=True, max_length=CONTEXT)["input_ids"]
        ids[row, : len(tokens)] = tokens
    return ids


@pytest.fixture(scope="module")
def goldens() -> dict:
    return json.loads(GOLDENS.read_text(encoding="utf-8"))


def write_open_clip_dir(directory: Path, goldens: dict, *, quick_gelu: bool | None, weights: str,
                        model_cfg: dict | None = None, state: dict | None = None) -> Path:
    """An open_clip checkpoint as the hub has them; ``quick_gelu=None`` leaves the key out (open_clip: GELU)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = dict(model_cfg or goldens["model_cfg"])
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    (directory / openclip.CONFIG_FILE).write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": PREPROCESS_CFG}))
    state = fill_state(goldens["shapes"]) if state is None else state
    if weights.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(directory / weights))
    else:
        torch.save(state, directory / weights)
    write_small_clip_tokenizer(directory, CONTEXT)
    return directory


def test_goldens_match_this_test(goldens: dict) -> None:
    # The goldens were made from this file's config, texts and ids (the generator imports them).
    assert goldens["model_cfg"] == MODEL_CFG and goldens["texts"] == TEXTS
    assert goldens["ids"] == open_clip_ids().tolist()


@pytest.mark.parametrize(("quick", "weights"), [(True, "open_clip_model.safetensors"),
                                                (False, "open_clip_pytorch_model.bin")])
def test_mapped_model_matches_open_clip(tmp_path: Path, goldens: dict, quick: bool, weights: str) -> None:
    # quick_gelu=False is written as no key at all: open_clip's default, exact GELU.
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=True if quick else None, weights=weights)
    run = goldens["runs"][str(quick).lower()]
    model = openclip.load_clip_model(directory)
    assert model.config.vision_config.hidden_act == ("quick_gelu" if quick else "gelu")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=torch.from_numpy(pixels()))
        text = model.get_text_features(input_ids=torch.tensor(goldens["ids"]))
    image = getattr(image, "pooler_output", image).numpy()
    text = getattr(text, "pooler_output", text).numpy()
    assert np.abs(image - np.asarray(run["image"])).max() <= 1e-5
    assert np.abs(text - np.asarray(run["text"])).max() <= 1e-5
    # The other activation gives other embeddings: the flag is read, not guessed.
    other = goldens["runs"][str(not quick).lower()]
    assert np.abs(image - np.asarray(other["image"])).max() > 1e-3

    # End to end through glimpse: the spec and the torch encoder (its own tokenization, normalised output).
    spec = load_spec(str(directory))
    assert (spec.family, spec.runtime, spec.dim, spec.context_length) == ("clip", "torch", 24, CONTEXT)
    assert spec.preprocess.resize == "squash" and spec.preprocess.interpolation == "bilinear"
    assert spec.preprocess.mean == (0.5, 0.4, 0.3) and spec.preprocess.height == 32
    assert spec.extra.get("format") == "open_clip"
    encoder = load_encoder(spec)
    try:
        want_text = np.asarray(run["text"]) / np.linalg.norm(run["text"], axis=1, keepdims=True)
        want_image = np.asarray(run["image"]) / np.linalg.norm(run["image"], axis=1, keepdims=True)
        assert np.abs(encoder.encode_texts(TEXTS) - want_text).max() <= 1e-5
        assert np.abs(encoder.encode_pixels(pixels()) - want_image).max() <= 1e-5
    finally:
        encoder.close()


def test_key_follows_the_weights(tmp_path: Path, goldens: dict) -> None:
    a = write_open_clip_dir(tmp_path / "a", goldens, quick_gelu=True, weights="open_clip_model.safetensors")
    state = fill_state(goldens["shapes"])
    state["ln_final.bias"] = state["ln_final.bias"] + 1.0
    b = write_open_clip_dir(tmp_path / "b", goldens, quick_gelu=True, weights="open_clip_model.safetensors",
                            state=state)
    key_a, key_b = load_spec(str(a)).key, load_spec(str(b)).key
    assert key_a != key_b and key_a == load_spec(str(a)).key
    # The same weights read with another activation are other vectors: the config is part of the key.
    config = json.loads((a / openclip.CONFIG_FILE).read_text())
    config["model_cfg"]["quick_gelu"] = False
    (a / openclip.CONFIG_FILE).write_text(json.dumps(config))
    assert load_spec(str(a)).key != key_a
    assert math.isclose(load_spec(str(a)).logit_scale, 100.0, rel_tol=1e-5)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda cfg: cfg["vision_cfg"].update(timm_model_name="convnext_base"), "timm model 'convnext_base'"),
    (lambda cfg: cfg["vision_cfg"].update(layers=[3, 4, 6, 3]), "ModifiedResNet"),
    (lambda cfg: cfg["text_cfg"].update(hf_model_name="xlm-roberta-base"), "Hugging Face model 'xlm-roberta-base'"),
    (lambda cfg: cfg.update(multimodal_cfg={"width": 32}), "CoCa"),
    (lambda cfg: cfg.update(init_logit_bias=-10.0), "SigLIP"),
    (lambda cfg: cfg["vision_cfg"].update(attentional_pool=True), "vision_cfg.attentional_pool=True"),
    (lambda cfg: cfg["text_cfg"].update(pool_type="last"), "text_cfg.pool_type='last'"),
    (lambda cfg: cfg["vision_cfg"].update(brand_new_option=3), "vision_cfg.brand_new_option=3"),
    (lambda cfg: cfg["text_cfg"].update(pool_type="eos", eos_id=2), "text_cfg.pool_type='eos'"),  # MetaCLIP 2
    (lambda cfg: cfg.update(audio_cfg={"model_type": "HTSAT", "mel_bins": 64, "sample_rate": 48000,
                                       "window_size": 1024, "hop_size": 480}),
     "model_cfg.audio_cfg={'model_type': 'HTSAT', 'mel_bins': 64, 'sample_rate': 48...;"),  # CLAP: cut short
])
def test_unsupported_towers_name_the_part(tmp_path: Path, goldens: dict, change, needle: str) -> None:
    cfg = json.loads(json.dumps(goldens["model_cfg"]))
    change(cfg)
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=None, weights="open_clip_model.safetensors",
                                    model_cfg=cfg)
    with pytest.raises(ModelError, match="unsupported open_clip") as info:
        load_spec(str(directory))
    assert needle in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 300


def test_missing_weights_and_tokenizer(tmp_path: Path, goldens: dict) -> None:
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=True, weights="open_clip_model.safetensors")
    (directory / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError) as info:
        load_spec(str(directory))
    assert "\n" not in str(info.value)
    with pytest.raises(ModelNotFoundError, match=r"open_clip_model\.safetensors, open_clip_pytorch_model\.bin"):
        openclip.load_clip_model(directory)

    directory = write_open_clip_dir(tmp_path / "t", goldens, quick_gelu=True, weights="open_clip_model.safetensors")
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"no tokenizer\.json: open_clip's default tokenizer is CLIP's BPE"):
        load_encoder(str(directory))


def test_state_dict_that_does_not_fit_the_config(tmp_path: Path, goldens: dict) -> None:
    state = fill_state(goldens["shapes"])
    del state["visual.ln_post.bias"]
    state["visual.extra_head.weight"] = torch.zeros(2)
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=True, weights="open_clip_model.safetensors",
                                    state=state)
    with pytest.raises(ModelError) as info:
        openclip.load_clip_model(directory)
    message = str(info.value)
    assert "missing 1 key(s) (visual.ln_post.bias)" in message
    assert "1 key(s) no CLIPModel weight takes (visual.extra_head.weight)" in message and "\n" not in message

    # Shapes that disagree with the config (a config of another size) are one line too.
    cfg = json.loads(json.dumps(goldens["model_cfg"]))
    cfg["embed_dim"] = 16
    directory = write_open_clip_dir(tmp_path / "s", goldens, quick_gelu=True, weights="open_clip_model.safetensors",
                                    model_cfg=cfg)
    with pytest.raises(ModelError, match=r"do not fit open_clip_config\.json") as info:
        openclip.load_clip_model(directory)
    assert "\n" not in str(info.value)


def _pictures(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir()
    for n, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (40 + n, 36), colour).save(folder / f"{n}.png")
    return folder


# Mojibake (UTF-8 read as cp1252) and HTML entities, escaped twice, as scraped captions carry them.
DIRTY = "  caf\u00c3\u00a9   &amp;amp;  cr\u00c3\u00a8me   br\u00c3\u00bbl\u00c3\u00a9e  "
CLEAN = "café & crème brûlée"


def test_open_clip_cleaning_repairs_mojibake_and_entities() -> None:
    """open_clip's SimpleTokenizer cleans every caption: ftfy.fix_text, html.unescape twice, whitespace."""
    from glimpse.tokenizer import clean_text

    assert clean_text(DIRTY, "open_clip") == CLEAN
    assert clean_text(DIRTY, "whitespace") != CLEAN  # immich's rule leaves both alone
    assert clean_text("a  <b>dog</b>", "open_clip") == "a <b>dog</b>"  # markup is text, not removed
    with pytest.raises(ModelError, match="unknown text cleaning rule"):
        clean_text("x", "lower")


def test_open_clip_queries_are_cleaned_in_torch_and_in_its_onnx_export(tmp_path: Path, goldens: dict) -> None:
    """A dirty query embeds as its clean form with the torch encoder, and with the ONNX export (which carries
    the rule in its spec), as open_clip's own tokenizer would have it."""
    from glimpse.encoders.export import export_model

    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=True, weights="open_clip_model.safetensors")
    spec = load_spec(str(directory))
    assert spec.extra["clean"] == "open_clip"
    encoder = load_encoder(spec)
    try:
        dirty, clean = encoder.encode_texts([DIRTY, CLEAN])
        assert np.abs(dirty - clean).max() == 0.0
        raw = encoder.encode_texts([DIRTY.strip()], lang=None)  # still cleaned: the rule is the model's
        assert np.abs(raw[0] - clean).max() <= 1e-6  # a batch of one: float noise only
    finally:
        encoder.close()
    exported = export_model(str(directory), tmp_path / "onnx").directory
    onnx_spec = load_spec(str(exported))
    assert onnx_spec.runtime == "onnx" and onnx_spec.extra["onnx"]["clean"] == "open_clip"
    onnx = load_encoder(onnx_spec)
    try:
        dirty_onnx, clean_onnx = onnx.encode_texts([DIRTY, CLEAN])
        assert np.abs(dirty_onnx - clean_onnx).max() == 0.0
        assert float(clean_onnx @ clean) > 0.9999
    finally:
        onnx.close()


def test_cli_indexes_and_searches_with_an_open_clip_dir(tmp_path: Path, goldens: dict) -> None:
    from typer.testing import CliRunner

    from glimpse.cli import app

    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=True, weights="open_clip_pytorch_model.bin")
    pics = _pictures(tmp_path / "pics")
    base = ["--library", str(tmp_path / "lib"), "--model", str(directory)]
    result = CliRunner().invoke(app, [*base, "index", str(pics)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*base, "search", "a photo of a dog", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3


def test_cli_unsupported_tower_is_one_line_and_writes_nothing(tmp_path: Path, goldens: dict) -> None:
    from typer.testing import CliRunner

    from glimpse.cli import app

    cfg = json.loads(json.dumps(goldens["model_cfg"]))
    cfg["vision_cfg"]["timm_model_name"] = "fastvit_mci2"  # MobileCLIP's image tower
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=None, weights="open_clip_model.safetensors",
                                    model_cfg=cfg)
    pics = _pictures(tmp_path / "pics")
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(directory),
                                      "index", str(pics)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "timm model 'fastvit_mci2'" in lines[0]
    catalog = tmp_path / "lib" / "catalog.sqlite3"
    if catalog.exists():  # the library may be opened before the model: then it must record nothing
        import sqlite3

        with sqlite3.connect(catalog) as db:
            counts = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("files", "models", "embeddings", "roots")]
        assert counts == [0, 0, 0, 0]


def test_hub_snapshot_of_an_open_clip_repo_resolves_by_name(tmp_path: Path, goldens: dict, monkeypatch) -> None:
    # A repo with only open_clip files, as `hf download owner/name` leaves it in the Hugging Face cache.
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--ViT-T-8-tiny"
    snapshot = write_open_clip_dir(repo / "snapshots" / revision, goldens, quick_gelu=True,
                                   weights="open_clip_model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = load_spec("someone/ViT-T-8-tiny")
    assert Path(spec.source) == snapshot.resolve() and spec.revision == revision
    assert spec.extra == {"repo_id": "someone/ViT-T-8-tiny", "format": "open_clip", "clean": "open_clip"}
    assert spec.key.startswith("someone-vit-t-8-tiny-")


def test_center_crop_rounds_its_offset_as_torchvision_does(tmp_path: Path, goldens: dict) -> None:
    # torchvision's CenterCrop (open_clip's eval transform): int(round(excess / 2)), Python's half-to-even;
    # transformers and immich floor. They differ for excesses of 3, 7, 11, ... pixels.
    from PIL import Image

    from glimpse.preprocess import crop_offset, preprocess_image

    assert [crop_offset(e, "round") for e in (0, 1, 2, 3, 4, 5, 7, 11)] == [0, 0, 1, 2, 2, 2, 4, 6]
    assert [crop_offset(e) for e in (0, 1, 2, 3, 4, 5, 7, 11)] == [0, 0, 1, 1, 2, 2, 3, 5]
    cfg = {**PREPROCESS_CFG, "resize_mode": "shortest"}
    directory = write_open_clip_dir(tmp_path / "m", goldens, quick_gelu=None, weights="open_clip_model.safetensors")
    (directory / openclip.CONFIG_FILE).write_text(json.dumps({"model_cfg": goldens["model_cfg"],
                                                              "preprocess_cfg": cfg}))
    pre = load_spec(str(directory)).preprocess
    assert (pre.resize, pre.crop_rounding) == ("shortest", "round")
    # A 32x35 image: 3 pixels too tall; the crop starts at row 2 (torchvision), not 1 (floor).
    rows = np.repeat(np.arange(35, dtype=np.uint8)[:, None] * 7, 32, axis=1)
    image = Image.fromarray(np.stack([rows] * 3, axis=-1), "RGB")
    got = preprocess_image(image, pre)
    first_row = (got[0, 0, 0] * pre.std[0] + pre.mean[0]) * 255
    assert round(float(first_row)) == 2 * 7
