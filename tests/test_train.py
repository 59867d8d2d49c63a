"""CLIP-family training: the losses, augmentation, and short real runs (CLIP, Chinese CLIP, SigLIP) whose
output loads through glimpse's loader."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import make_photo
from glimpse.errors import UserInputError

torch = pytest.importorskip("torch")

from glimpse.train import (  # noqa: E402 - after the torch skip
    TrainOptions,
    _augment,
    caption_data,
    contrastive_loss,
    image_folder_data,
    sigmoid_loss,
    train_clip,
)


@pytest.fixture(scope="session")
def tiny_chinese_clip(tmp_path_factory):
    from tiny_models import make_tiny_chinese_clip

    return make_tiny_chinese_clip(tmp_path_factory.mktemp("tiny-chinese-clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory):
    from tiny_models import make_tiny_siglip

    return make_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


def _folder(root, classes=("red", "blue"), per_class=4):
    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
    from PIL import Image

    for name in classes:
        for i in range(per_class):
            # A solid colour with a little per-image texture: the class is learnable from a handful.
            rng = np.random.default_rng(100 * list(colours).index(name) + i)
            pixels = np.clip(np.array(colours[name]) + rng.integers(-25, 25, size=(32, 32, 3)), 0, 255)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_contrastive_loss_is_clip_loss_for_unique_groups_and_group_aware_otherwise():
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * image @ text.t()
    targets = torch.arange(4)
    clip = (torch.nn.functional.cross_entropy(logits, targets) + torch.nn.functional.cross_entropy(logits.t(),
                                                                                                   targets)) / 2
    assert contrastive_loss(torch, image, text, torch.arange(4), scale).item() == pytest.approx(clip.item(), rel=1e-6)
    # Samples 0 and 1 share a group: row 0's target is half on column 0, half on column 1.
    groups = torch.tensor([0, 0, 1, 2])
    soft = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    by_hand = (-(soft * logits.log_softmax(1)).sum(1).mean() - (soft * logits.t().log_softmax(1)).sum(1).mean()) / 2
    assert contrastive_loss(torch, image, text, groups, scale).item() == pytest.approx(by_hand.item(), rel=1e-6)


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_sigmoid_loss_by_hand_with_group_positives():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale, bias = torch.tensor([10.0]), torch.tensor([-5.0])
    # logits = 10 * [[1, 0.6], [0, 0.8]] - 5 = [[5, 1], [-5, 3]]; divided by the batch size 2.
    unique = -(_logsig(5) + _logsig(-1) + _logsig(5) + _logsig(3)) / 2
    assert sigmoid_loss(torch, image, text, torch.tensor([0, 1]), scale, bias).item() == pytest.approx(unique, rel=1e-6)
    # One group: every pair is a positive, so the off-diagonal signs flip.
    shared = -(_logsig(5) + _logsig(1) + _logsig(-5) + _logsig(3)) / 2
    assert sigmoid_loss(torch, image, text, torch.tensor([7, 7]), scale, bias).item() == pytest.approx(shared, rel=1e-6)


def test_sigmoid_loss_is_siglip_models_own_loss_for_unique_groups(tiny_siglip):
    from transformers import AutoTokenizer, SiglipModel

    model = SiglipModel.from_pretrained(tiny_siglip).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_siglip)(["a dog on the beach", "a cat in the city", "a man at night"],
                                                       padding="max_length", max_length=64, return_tensors="pt")
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=tokens["input_ids"], pixel_values=pixels, return_loss=True)
        ours = sigmoid_loss(torch, out.image_embeds, out.text_embeds, torch.arange(3), model.logit_scale.exp(),
                            model.logit_bias)
    assert ours.item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_augment_shifts_and_flips_within_the_reflect_padding():
    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = _augment(torch, pixels, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == pixels.shape
    padded = torch.nn.functional.pad(pixels, (2, 2, 2, 2), mode="reflect")
    for b in range(2):
        # Each output is some 8x8 window of the padded image, possibly mirrored.
        windows = [padded[b, :, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(out[b], w) or torch.equal(out[b], w.flip(2)) for w in windows)
    again = _augment(torch, pixels, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(out, again)


def test_train_from_scratch_learns_and_loads_through_the_normal_loader(tmp_path, clip_tokenizer_dir):
    tokenizer = clip_tokenizer_dir
    data = image_folder_data(_folder(tmp_path / "data"), ["a photo of a {}.", "a {} thing."])
    assert data.class_names == ["blue", "red"] and data.captions[0] == ["a photo of a blue.", "a blue thing."]
    options = TrainOptions(epochs=24, batch_size=8, lr=2e-3, warmup=0.1, augment=False, seed=0)
    report = train_clip(data, tmp_path / "out", config="tiny", tokenizer=tokenizer, options=options)
    assert report.steps == 24 and len(report.step_losses) == 24
    # The loss goes down: the last steps are clearly below the first ones.
    assert np.mean(report.step_losses[-3:]) < np.mean(report.step_losses[:3]) - 0.05

    from glimpse.registry import load_encoder, load_spec
    from glimpse.zeroshot import ZeroShotClassifier

    spec = load_spec(str(tmp_path / "out"))
    assert spec.family == "clip" and spec.dim == 128 and spec.context_length == 32
    assert (spec.preprocess.height, spec.preprocess.width) == (32, 32)
    # From scratch, the preprocessing is normalised with the training images' own statistics.
    assert spec.preprocess.mean[0] != pytest.approx(0.48145466)
    encoder = load_encoder(spec)
    from PIL import Image

    vectors = encoder.encode_images([Image.open(p) for p in data.paths])
    assert vectors.shape == (8, 128) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    clf = ZeroShotClassifier.build(encoder, ["blue", "red"], ["a photo of a {}."])
    # 24 steps on two colours are enough to tell them apart (12 were, for some seeds only: 2 of 5 failed).
    assert (clf.probabilities(vectors).argmax(1) == np.array(data.groups)).mean() >= 0.75
    report_file = json.loads((tmp_path / "out" / "train_report.json").read_text())
    assert report_file["steps"] == 24 and report_file["config"]["config"] == "tiny"


def test_fine_tune_a_checkpoint_on_caption_pairs(tmp_path, tiny_clip):
    pairs = []
    for i in range(6):
        path = make_photo(tmp_path / "img" / f"{i}.jpg", seed=i, size=(40, 40))
        pairs.append((str(path), f"photo number {i % 3}"))
    data = caption_data(pairs)
    assert data.groups == [0, 1, 2, 0, 1, 2]
    report = train_clip(data, tmp_path / "ft", base=str(tiny_clip),
                        options=TrainOptions(epochs=10, batch_size=6, lr=5e-3, augment=False))
    assert np.mean(report.step_losses[-3:]) < np.mean(report.step_losses[:3])
    from glimpse.registry import load_spec

    base, tuned = load_spec(str(tiny_clip)), load_spec(str(tmp_path / "ft"))
    assert tuned.preprocess == base.preprocess and tuned.dim == base.dim
    assert tuned.key != base.key  # new weights, new key: vectors of the two never mix
    assert (tmp_path / "ft" / "preprocessor_config.json").read_bytes() == \
        (tiny_clip / "preprocessor_config.json").read_bytes()


def test_train_errors(tmp_path):
    data = caption_data([("a.jpg", "x"), ("b.jpg", "y")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(UserInputError, match="not empty"):
        train_clip(data, tmp_path / "full", tokenizer="t")
    with pytest.raises(UserInputError, match="needs a tokenizer"):
        train_clip(data, tmp_path / "o")
    with pytest.raises(UserInputError, match="epochs"):
        train_clip(data, tmp_path / "o", options=TrainOptions(epochs=0))
    with pytest.raises(UserInputError, match="no image"):
        caption_data([])


def test_train_clip_cli_then_classify_with_the_new_model(tmp_path, clip_tokenizer_dir):
    from typer.testing import CliRunner

    from glimpse.cli import app

    tokenizer = clip_tokenizer_dir
    _folder(tmp_path / "data", per_class=3)
    runner = CliRunner()
    result = runner.invoke(app, ["train", "clip", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"),
                                 "--tokenizer", str(tokenizer), "--epochs", "2", "--batch-size", "6",
                                 "--max-steps", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 2 and summary["images"] == 6 and summary["groups"] == 2
    result = runner.invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(tmp_path / "m"), "classify",
                                 str(tmp_path / "data"), "--labels", "red,blue", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 6
    result = runner.invoke(app, ["train", "clip", "--out", str(tmp_path / "m2")])
    assert result.exit_code == 1 and "exactly one of --data" in result.stderr


_CAPTIONS = {
    "chinese_clip": ["一只猫的照片", "红色汽车", "蓝天白云"],
    "siglip": ["a dog on the beach", "a cat in the city", "the red car at night"],
}


def _loss_through_glimpse(encoder, images, captions, groups):
    """The family's training loss on the pairs, from glimpse's own image/text vectors (eval mode)."""
    image = torch.from_numpy(encoder.encode_images(images))
    text = torch.from_numpy(encoder.encode_texts(captions))[torch.tensor(groups)]
    spec, g = encoder.spec, torch.tensor(groups)
    if spec.family == "siglip":
        return sigmoid_loss(torch, image, text, g, spec.logit_scale, spec.logit_bias).item()
    return contrastive_loss(torch, image, text, g, spec.logit_scale).item()


@pytest.mark.parametrize("family", ["chinese_clip", "siglip"])
def test_fine_tune_chinese_clip_and_siglip_learns_and_loads(tmp_path, request, family):
    base_dir = request.getfixturevalue(f"tiny_{family}")
    captions = _CAPTIONS[family]
    pairs = []
    for i in range(6):
        path = make_photo(tmp_path / "img" / f"{i}.jpg", seed=i, size=(40, 40))
        pairs.append((str(path), captions[i % 3]))
    data = caption_data(pairs)
    # 30 steps: the tiny Chinese CLIP's BERT keeps its 10 % dropout in training (as the checkpoint says),
    # which makes its loss noisy and slower to fall than CLIP's.
    report = train_clip(data, tmp_path / "ft", base=str(base_dir),
                        options=TrainOptions(epochs=30, batch_size=6, lr=3e-3, warmup=0.1, augment=False))
    assert report.steps == 30
    assert np.mean(report.step_losses[-5:]) < np.mean(report.step_losses[:5]) - 0.1

    from PIL import Image

    from glimpse.registry import load_encoder, load_spec

    base, tuned = load_spec(str(base_dir)), load_spec(str(tmp_path / "ft"))
    assert tuned.family == family and tuned.key != base.key
    assert (tuned.preprocess, tuned.dim, tuned.context_length, tuned.text_padding) == \
        (base.preprocess, base.dim, base.context_length, base.text_padding)
    if family == "siglip":
        # The bias is a trained parameter of the sigmoid loss, so fine-tuning moves it.
        assert tuned.text_padding == "max_length" and tuned.logit_bias != pytest.approx(base.logit_bias)
    images = [Image.open(p) for p in data.paths]
    tuned_encoder, base_encoder = load_encoder(tuned), load_encoder(base)
    vectors = tuned_encoder.encode_images(images)
    texts = tuned_encoder.encode_texts(captions)
    assert vectors.shape == (6, base.dim) and texts.shape == (3, base.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # The saved checkpoint, read back through glimpse's loader, tokenizer handling and logit scale/bias,
    # fits the training pairs clearly better than the base did.
    assert _loss_through_glimpse(tuned_encoder, images, captions, data.groups) < \
        _loss_through_glimpse(base_encoder, images, captions, data.groups) - 0.15
