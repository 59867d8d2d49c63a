"""RAM / RAM++: strict loading of official-layout checkpoints, parity with the official code, inference semantics.

Golden values: produced by running the official xinyu1205/recognize-anything code (commit 7cb804a, its own
virtualenv with transformers 4.40; timm/fairscale replaced by no-op stand-ins for DropPath/trunc_normal_)
on a tiny config — Swin (embed 8, depths 2,2,2,2, heads 1,2,2,4, window 7, 224 px), q2l tagging head
(hidden 32, 4 heads, intermediate 48, 2 layers), 12 classes — with every parameter set by `fill` below
(seeded by the key name, so this test rebuilds the same weights without the official code; RAM's tied
tagging-head tensors under their tag_encoder.* names), fc.bias
lowered by `shift` (the median logit, so some tags pass), and input `default_rng(3).standard_normal`.
`logits` are the official fc outputs, `tags` the official generate_tag() output with the per-class
threshold file below. None of the official code is part of this repository.
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
  "shift": 2.6901350021362305,
  "logits": [
   [
    0.010928,
    -0.099232,
    0.025367,
    -0.205938,
    0.0,
    0.013681,
    -2.318842,
    -0.067948,
    -0.116285,
    0.008872,
    0.006811,
    -1.461587
   ],
   [
    1.0336,
    0.314459,
    0.310514,
    1.127508,
    0.314049,
    1.467596,
    1.044747,
    0.302211,
    0.387022,
    1.491206,
    0.746199,
    0.317081
   ],
   [
    -2.085,
    -2.584947,
    -2.65613,
    -0.321905,
    -2.154715,
    -2.577267,
    -2.966319,
    -2.880951,
    1.765808,
    -2.884502,
    -3.040195,
    -0.794023
   ]
  ],
  "tags": [
   "tag1 | tag2 | tag3",
   "tag0 | tag1 | tag2 | tag3 | tag5 | tag6 | tag8 | tag9 | tag10 | tag11",
   "tag3 | tag8 | tag11"
  ]
 },
 "ram_plus": {
  "shift": 3.8097872734069824,
  "logits": [
   [
    -1.057485,
    -0.346937,
    0.633503,
    -0.846638,
    0.27857,
    1.215997,
    0.019363,
    -1.060186,
    0.984107,
    -0.407509,
    -0.870375,
    1.78343
   ],
   [
    -1.080608,
    -1.125156,
    -1.12043,
    0.000744,
    -0.006696,
    -0.963081,
    -1.125465,
    -0.003058,
    0.0,
    -1.122588,
    -1.123331,
    -1.20373
   ],
   [
    3.249746,
    1.937208,
    2.669734,
    3.246876,
    2.45897,
    1.734766,
    2.858653,
    2.661963,
    -0.012331,
    0.849028,
    2.594778,
    3.207467
   ]
  ],
  "tags": [
   "tag1 | tag2 | tag5 | tag8 | tag11",
   "tag3",
   "tag0 | tag1 | tag2 | tag3 | tag4 | tag5 | tag6 | tag7 | tag9 | tag10 | tag11"
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
TINY_SWIN = SwinConfig(image_size=224, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7)


def fill(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The parity run's weights: a function of the key name only."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    w = rng.standard_normal(shape).astype(np.float32) * np.float32(0.5 if len(shape) > 1 else 0.1)
    if key.endswith(("norm.weight", "LayerNorm.weight", "norm1.weight", "norm2.weight")):
        w += np.float32(1.0)
    if key == "reweight_scale":
        w = np.array(np.log(1 / 0.07), dtype=np.float32)
    return w


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
    return np.random.default_rng(3).standard_normal((3, 3, 224, 224)).astype(np.float32)


def official_order(tags) -> str:
    return " | ".join(t.name for t in sorted(tags, key=lambda t: t.index))


@pytest.mark.parametrize("variant", ["ram", "ram_plus"])
def test_parity_with_the_official_implementation(tmp_path, variant):
    tagger = RamTagger(write_checkpoint(tmp_path, variant), languages=("en", "zh"))
    logits = tagger.logits(pixels())
    golden = np.array(GOLDEN[variant]["logits"], dtype=np.float32)
    assert np.abs(logits - golden).max() <= 1e-4
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
    assert np.abs(tagger.logits(pixels()[:1]) - np.array(GOLDEN["ram"]["logits"][:1])).max() <= 1e-4


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
