"""RAM / RAM++ ONNX export: parity with torch (and so with the official goldens), torch-free tagging."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import make_photo
from glimpse.errors import ModelError, ParityError, UserInputError
from glimpse.images import open_image
from glimpse.tagging.base import select
from glimpse.tagging.onnx_export import export_ram, tag_agreement
from glimpse.tagging.ram import RamTagger
from glimpse.tagging.ram_onnx import OnnxRamTagger
from test_tagging_ram import GOLDEN, PARITY_ATOL, official_order, official_state_dict, pixels, write_checkpoint

# onnxruntime sums in another order than torch; on the well-conditioned test model (see test_tagging_ram) that
# moves logits by ~1e-6, so the fp32 export is held to the same tolerance as torch's parity with the official code.
ONNX_ATOL = PARITY_ATOL


def ill_conditioned_state(gain: float = 4.0) -> dict:
    """RAM weights whose matrices are ``gain`` x the well-conditioned scale: activations grow layer by layer
    (like an untrained net's), so int8 quantisation error grows with them until it changes tags."""
    state = official_state_dict(plus=False, shift=GOLDEN["ram"]["shift"])
    derived = ("relative_position_index", "attn_mask", "label_embed")
    return {k: v * gain if v.ndim > 1 and not k.endswith(derived) else v for k, v in state.items()}


@pytest.mark.parametrize("variant", ["ram", "ram_plus"])
def test_fp32_export_matches_torch_and_the_official_goldens(tmp_path, variant):
    checkpoint = write_checkpoint(tmp_path / "ckpt", variant)
    result = export_ram(checkpoint, tmp_path / "onnx")
    parity = result["parity"]
    assert parity["passed"] and parity["identical_tag_sets"] == parity["samples"] == 10
    assert parity["max_abs_logit_diff"] <= ONNX_ATOL
    assert result["parity"]["rule"].startswith("identical tags")
    assert result["source"] == RamTagger(checkpoint).source  # fp32 tags are stored under the checkpoint's source
    assert sorted(os.listdir(tmp_path / "onnx")) == ["parity.json", "ram.json", "ram.onnx", "ram_tag_list.txt",
                                                     "ram_tag_list_chinese.txt", "ram_tag_list_threshold.txt"]
    tagger = OnnxRamTagger(tmp_path / "onnx", languages=("en", "zh"))
    logits = tagger.logits(pixels())
    assert np.abs(logits - np.array(GOLDEN[variant]["logits"])).max() <= PARITY_ATOL + ONNX_ATOL
    tags = select(tagger.score_pixels(pixels()), tagger.vocab)
    assert [official_order(row) for row in tags] == GOLDEN[variant]["tags"]
    assert tags[0][0].name_zh.startswith("标签")


def test_onnx_tagging_runs_without_torch(tmp_path):
    from typer.testing import CliRunner

    from glimpse.cli import app

    done = CliRunner().invoke(app, ["tag-export", str(write_checkpoint(tmp_path / "ckpt", "ram_plus")),
                                    str(tmp_path / "onnx"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["parity"]["passed"]
    photo = make_photo(tmp_path / "p.jpg", seed=5, size=(300, 200))
    torch_tagger = RamTagger(tmp_path / "ckpt" / "ram_plus.pth")
    torch_tags = torch_tagger.tag_images([open_image(photo, min_side=torch_tagger.preprocess.min_side).image])[0]
    # A None entry in sys.modules makes `import torch` (and transformers, which needs it) fail.
    script = ("import sys, json; sys.modules['torch'] = None; sys.argv = ['glimpse'] + json.loads(sys.argv[1]); "
              "from glimpse.cli import main; main()")
    args = ["tag", str(photo), "--tagger", "ram", "--ram-checkpoint", str(tmp_path / "onnx" / "ram.onnx"), "--json"]
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True,
                          env={**os.environ, "GLIMPSE_LIBRARY": str(tmp_path / "lib")})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)[0]
    assert [t["tag"] for t in result["tags"]] == [t.name for t in torch_tags]
    # Same tags, same order, the same probabilities up to onnxruntime's summation order.
    np.testing.assert_allclose([t["score"] for t in result["tags"]], [t.score for t in torch_tags], atol=ONNX_ATOL)


def test_int8_export_is_refused_when_it_changes_tags(tmp_path):
    """A model too ill-conditioned for int8 (tags change): the export must refuse and write nothing."""
    checkpoint = write_checkpoint(tmp_path / "ckpt", "ram", state=ill_conditioned_state())
    with pytest.raises(ParityError, match=r"int8 ONNX export does not match torch .*tag agreement"):
        export_ram(checkpoint, tmp_path / "int8", precision="int8")
    assert not (tmp_path / "int8").exists()
    failed = json.loads((tmp_path / "int8.parity-failed.json").read_text())
    assert failed["precision"] == "int8" and not failed["passed"] and failed["tag_agreement"] < 0.95
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".int8.partial")]


def test_export_errors_and_agreement(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "ckpt", "ram")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserInputError, match="not empty"):
        export_ram(checkpoint, tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(ModelError, match="does not exist"):
        OnnxRamTagger(tmp_path / "nowhere.onnx")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ram.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match=r"ram\.json"):
        OnnxRamTagger(tmp_path / "half")
    assert tag_agreement([{"a", "b"}, set()], [{"a"}, {"c"}]) == pytest.approx(2 * 1 / 4)
    assert tag_agreement([set()], [set()]) == 1.0
