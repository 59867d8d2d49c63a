"""RAM / RAM++: strict loading of official-layout checkpoints, parity with the official code, inference semantics.

Golden values: produced by running the official xinyu1205/recognize-anything code (commit 7cb804a, with
transformers 4.40.2 and torch 2.13 CPU, on an AVX2-only x86-64 machine) with ``tests/make_ram_goldens.py``,
which records every step: a tiny config — Swin (embed 8, depths 2,2,2,2, heads 1,2,2,4, window 7, 224 px),
q2l tagging head (hidden 32, 4 heads, intermediate 48, 2 layers), 12 classes — with every parameter set by
`fill` below (seeded by the key name, so this test rebuilds the same weights without the official code;
RAM's tied tagging-head tensors under their tag_encoder.* names), fc.bias lowered by `shift` (the median
logit, so some tags pass), and input `pixels()`. `logits` are the official fc outputs (rounded to 1e-6),
`tags` the official generate_tag() output with the per-class threshold file below. None of the official
code is part of this repository.

The weights are scaled so activations stay O(1) (see `fill`): float32 logits then agree with float64 to
~1e-6 and with the official float32 run to ~1e-6 whatever the CPU's kernels, so the parity tolerance (1e-5)
measures the implementation rather than one machine's summation order.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from glimpse.errors import ModelError, UserInputError  # noqa: E402
from glimpse.tagging.base import select  # noqa: E402
from glimpse.tagging.ram import RamTagger, load_ram  # noqa: E402
from glimpse.tagging.ram_model import RamConfig, RamModel  # noqa: E402
from glimpse.tagging.swin import SwinConfig, relative_position_index, shifted_window_mask  # noqa: E402

GOLDEN = json.loads("""
{
 "ram": {
  "shift": -0.6090142726898193,
  "logits": [
   [
    0.690969,
    0.177235,
    0.078825,
    -0.645141,
    0.490453,
    -0.805625,
    0.0,
    0.119226,
    -0.402529,
    -0.354229,
    -0.85679,
    -0.61519
   ],
   [
    0.94858,
    0.576801,
    0.432822,
    -0.36454,
    0.72579,
    -0.392161,
    0.261395,
    0.383223,
    -0.045895,
    -0.018023,
    -0.63782,
    -0.324109
   ],
   [
    1.14132,
    0.734138,
    0.147417,
    -0.37277,
    0.661437,
    0.076553,
    0.550663,
    0.333539,
    -0.076864,
    -0.16434,
    -0.328335,
    -0.379463
   ]
  ],
  "tags": [
   "tag0 | tag1 | tag2 | tag3 | tag11",
   "tag0 | tag1 | tag2 | tag3 | tag4 | tag6 | tag7 | tag11",
   "tag0 | tag1 | tag2 | tag3 | tag4 | tag6 | tag11"
  ]
 },
 "ram_plus": {
  "shift": 0.8896975517272949,
  "logits": [
   [
    0.190861,
    0.024912,
    -0.465102,
    0.152489,
    -0.08564,
    -0.510153,
    0.0,
    -0.294344,
    -0.071817,
    -0.631202,
    -0.068998,
    0.571834
   ],
   [
    0.074848,
    -0.191806,
    -0.646624,
    0.042446,
    -0.216457,
    -0.669607,
    -0.072821,
    -0.366847,
    -0.284343,
    -0.860107,
    -0.16668,
    0.467048
   ],
   [
    0.663024,
    0.489835,
    0.154416,
    0.655373,
    0.450573,
    0.023208,
    0.422123,
    0.269495,
    0.623059,
    -0.004742,
    0.370244,
    1.084062
   ]
  ],
  "tags": [
   "tag1 | tag2 | tag3 | tag11",
   "tag1 | tag2 | tag3 | tag11",
   "tag0 | tag1 | tag2 | tag3 | tag6 | tag8 | tag11"
  ]
 },
 "thresholds": [
  0.55,
  0.41,
  0.32,
  0.31,
  0.63,
  0.67,
  0.54,
  0.59,
  0.52,
  0.67,
  0.63,
  0.3
 ]
}
""")
NUM = 12
# float32 rounding of this well-conditioned model is ~1e-6 (see test_test_model_is_well_conditioned), the
# goldens are rounded to 1e-6: 1e-5 leaves a margin on any CPU and still catches a wrong operation.
PARITY_ATOL = 1e-5
TINY_SWIN = SwinConfig(image_size=224, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)


def label_embeddings(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-norm rows, ``shape[0] // NUM`` per class (RAM++'s descriptions) scattered around a class direction."""
    per_class = shape[0] // NUM
    classes = rng.standard_normal((NUM, 1, shape[1]))
    rows = classes + 0.5 * rng.standard_normal((NUM, per_class, shape[1]))
    rows /= np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows.reshape(shape)


def fill(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The parity run's weights: a function of the key name and shape only, scaled so activations stay O(1).

    Matrices are N(0, 1/fan_in) (a layer keeps its input's scale); label embeddings have unit-norm rows (like
    the CLIP text embeddings they stand for), so ``wordvec_proj`` is N(0, 1); relative-position biases, vector
    biases and norm offsets are small. With these weights float32 logits agree with float64 to ~1e-6, so a
    golden comparison measures the implementation, not the summation order of one CPU's kernels.
    """
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    w = rng.standard_normal(shape)
    if key.endswith("label_embed"):
        w = label_embeddings(rng, shape)
    elif key.endswith("wordvec_proj.weight"):
        pass  # its inputs are unit-norm rows, so N(0, 1) weights give O(1) queries
    elif key.endswith("relative_position_bias_table"):
        w *= 0.1
    elif len(shape) > 1:
        w /= np.sqrt(np.prod(shape[1:]))
    else:
        w *= 0.1
    if key.endswith(("norm.weight", "LayerNorm.weight", "norm1.weight", "norm2.weight")):
        w += 1.0
    if key == "reweight_scale":
        w = np.array(np.log(1 / 0.07))
    return w.astype(np.float32)


def official_state_dict(plus: bool, shift: float = 0.0, *, extras: bool = True) -> dict:
    """A state dict in the official key layout (derived buffers and, for RAM, the Tag2Text branch included)."""
    config = RamConfig(swin=TINY_SWIN, num_classes=NUM, plus=plus, descriptions=51 if plus else 1,
                       hidden_size=32, intermediate_size=48)
    model = RamModel(config)
    # RAM ties its tagging head to the lower layers of its Tag2Text encoder (tie_encoder_decoder_weights), so in
    # the parity run those tensors were filled under their tag_encoder.* name.
    def name(key: str) -> str:
        return key.replace("tagging_head.", "tag_encoder.") if not plus else key

    state = {k: torch.from_numpy(fill(name(k), tuple(v.shape))) for k, v in model.state_dict().items()}
    state["fc.bias"] = state["fc.bias"] - torch.tensor(shift, dtype=torch.float32)
    if extras:
        res = 224 // 4
        for i, depth in enumerate(TINY_SWIN.depths):
            r = res // 2**i
            for j in range(depth):
                window = min(7, r)
                prefix = f"visual_encoder.layers.{i}.blocks.{j}."
                state[prefix + "attn.relative_position_index"] = relative_position_index(window)
                if j % 2 and r > 7:
                    state[f"visual_encoder.layers.{i}.blocks.{j}.attn_mask"] = shifted_window_mask(r, 7, 3)
        if not plus:
            state["tag_encoder.encoder.layer.0.attention.self.query.weight"] = torch.zeros(32, 32)
            state["text_decoder.cls.predictions.bias"] = torch.zeros(64)
    return state


def write_checkpoint(directory: Path, variant: str, *, state: dict | None = None, files: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plus = variant == "ram_plus"
    path = directory / f"{variant}.pth"
    torch.save({"model": state if state is not None else official_state_dict(plus, GOLDEN[variant]["shift"])}, path)
    if files:
        (directory / "ram_tag_list.txt").write_text("\n".join(f"tag{i}" for i in range(NUM)) + "\n")
        (directory / "ram_tag_list_chinese.txt").write_text("\n".join(f"标签{i}/别名{i}" for i in range(NUM)) + "\n")
        (directory / "ram_tag_list_threshold.txt").write_text("\n".join(map(str, GOLDEN["thresholds"])) + "\n")
    return path


def pixels() -> np.ndarray:
    """Three normalised 'images' ``float32[3, 3, 224, 224]``: a coarse 7x7 pattern per image plus fine noise."""
    rng = np.random.default_rng(3)
    coarse = np.kron(rng.standard_normal((3, 3, 7, 7)), np.ones((32, 32)))
    return (coarse + 0.5 * rng.standard_normal((3, 3, 224, 224))).astype(np.float32)


def official_order(tags) -> str:
    return " | ".join(t.name for t in sorted(tags, key=lambda t: t.index))


@pytest.mark.parametrize("variant", ["ram", "ram_plus"])
def test_parity_with_the_official_implementation(tmp_path, variant):
    tagger = RamTagger(write_checkpoint(tmp_path, variant), languages=("en", "zh"))
    logits = tagger.logits(pixels())
    golden = np.array(GOLDEN[variant]["logits"], dtype=np.float32)
    assert np.abs(logits - golden).max() <= PARITY_ATOL
    # The golden tags are not fragile: every logit is far from its class threshold (in logit space).
    cut = np.log(np.array(GOLDEN["thresholds"]) / (1 - np.array(GOLDEN["thresholds"])))
    assert np.abs(golden - cut[None, :]).min() > 1e-3
    tags = select(tagger.score_pixels(pixels()), tagger.vocab)
    assert [official_order(row) for row in tags] == GOLDEN[variant]["tags"]
    report = tagger.report
    assert report.variant == variant and report.image_size == 224 and report.num_classes == NUM
    assert report.derived_checked == 11
    assert report.ignored == ({} if variant == "ram_plus" else {"tag_encoder": 1, "text_decoder": 1})
    assert tagger.source.startswith(variant + ":")


@pytest.mark.parametrize("variant", ["ram", "ram_plus"])
def test_test_model_is_well_conditioned(tmp_path, variant):
    """The golden comparison is only meaningful if float32 rounding (which differs between CPUs: AVX2 vs
    AVX-512 kernels sum in other orders) moves logits far less than the parity tolerance."""
    model, _ = load_ram(write_checkpoint(tmp_path, variant))
    x = torch.from_numpy(pixels())
    with torch.no_grad():
        single = model(x).numpy()
        double = model.double()(x.double()).numpy()
    assert np.abs(single - double).max() <= PARITY_ATOL / 5
    # ...and the logits are not degenerate: they vary across classes and across images.
    assert double.std(axis=1).min() > 0.1 and double.std(axis=0).min() > 0.02


def test_global_threshold_overrides_every_class_and_exclude_and_only(tmp_path):
    tagger = RamTagger(write_checkpoint(tmp_path, "ram"), languages=("en", "zh"))
    scores = tagger.score_pixels(pixels())
    everything = select(scores, tagger.vocab, threshold=0.0)
    assert all(len(row) == NUM for row in everything)
    high = select(scores, tagger.vocab, threshold=0.99)
    assert [[t.name for t in row] for row in high] == [[f"tag{i}" for i in np.flatnonzero(s > 0.99)] for s in scores]
    default = select(scores, tagger.vocab)
    first = {t.name for t in default[0]}
    assert first == set(GOLDEN["ram"]["tags"][0].split(" | "))
    excluded = select(scores, tagger.vocab, exclude=["tag1", "标签2"])  # English or Chinese name
    assert {t.name for t in excluded[0]} == first - {"tag1", "tag2"}
    only = select(scores, tagger.vocab, only=["tag1", "tag0"])
    assert {t.name for t in only[0]} == first & {"tag0", "tag1"}
    tag = default[0][0]
    assert tag.name_zh == f"标签{tag.index}" and tag.aliases_zh == (f"别名{tag.index}",)
    assert default[0] == sorted(default[0], key=lambda t: -t.score)
    with pytest.raises(UserInputError, match="nope"):
        select(scores, tagger.vocab, exclude=["nope"])
    with pytest.raises(UserInputError, match="between 0 and 1"):
        select(scores, tagger.vocab, threshold=1.5)


def test_missing_tag_files_are_named(tmp_path):
    path = write_checkpoint(tmp_path, "ram", files=False)
    with pytest.raises(UserInputError, match=r"ram_tag_list.txt"):
        RamTagger(path)
    (tmp_path / "ram_tag_list.txt").write_text("\n".join(f"tag{i}" for i in range(NUM)))
    with pytest.raises(UserInputError, match=r"ram_tag_list_threshold.txt"):
        RamTagger(path)
    RamTagger(path, need_thresholds=False)  # a global --threshold needs no threshold file
    with pytest.raises(UserInputError, match=r"ram_tag_list_chinese.txt"):
        RamTagger(path, languages=("zh",), need_thresholds=False)
    (tmp_path / "ram_tag_list.txt").write_text("just\nthree\nlines")
    with pytest.raises(UserInputError, match="3 lines"):
        RamTagger(path, need_thresholds=False)


def test_strict_loading_reports_bad_keys(tmp_path):
    state = official_state_dict(plus=True)
    state["surprise.weight"] = torch.zeros(2)
    with pytest.raises(ModelError, match=r"unexpected key.*surprise.weight"):
        load_ram(write_checkpoint(tmp_path / "a", "ram_plus", state=state))
    state = official_state_dict(plus=True)
    del state["fc.weight"]
    with pytest.raises(ModelError, match=r"missing key.*fc.weight"):
        load_ram(write_checkpoint(tmp_path / "b", "ram_plus", state=state))
    state = official_state_dict(plus=True)
    state["visual_encoder.layers.0.blocks.0.attn.relative_position_index"] += 1
    with pytest.raises(ModelError, match="relative_position_index"):
        load_ram(write_checkpoint(tmp_path / "c", "ram_plus", state=state))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read the RAM checkpoint"):
        load_ram(bad)


def test_old_vision_multi_names_are_renamed(tmp_path):
    state = official_state_dict(plus=False, shift=GOLDEN["ram"]["shift"])
    state = {k.replace("tagging_head.", "vision_multi."): v for k, v in state.items()}
    tagger = RamTagger(write_checkpoint(tmp_path, "ram", state=state))
    assert np.abs(tagger.logits(pixels()[:1]) - np.array(GOLDEN["ram"]["logits"][:1])).max() <= PARITY_ATOL


def test_open_set_queries_leave_closed_logits_unchanged(tmp_path):
    """Label queries never attend to each other, so appended open-set queries change no closed-set logit."""
    tagger = RamTagger(write_checkpoint(tmp_path, "ram_plus"))
    before = tagger.logits(pixels()[:2])
    raw = torch.randn(2, 5, 512, generator=torch.Generator().manual_seed(0))
    embeddings = torch.nn.functional.normalize(raw, dim=-1)
    tagger.model.set_open_set(embeddings)
    after = tagger.logits(pixels()[:2])
    assert after.shape == (2, NUM + 2)
    np.testing.assert_allclose(after[:, :NUM], before, atol=1e-5)
    # RAM++ re-weights each open tag's 5 prompt embeddings per image: the same as a 1-tag model of it.
    tagger.model.set_open_set(embeddings[1:])
    np.testing.assert_allclose(tagger.logits(pixels()[:2])[:, NUM], after[:, NUM + 1], atol=1e-5)
