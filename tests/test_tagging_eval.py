"""Tag evaluation (mAP, per-class P/R at the thresholds), labelled-data readers, calibration command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_photo, shared_data
from glimpse.errors import UserInputError
from glimpse.tagging.evaluate_tags import evaluate_tagger, tag_metrics
from glimpse.tagging.labelled import COCO_TAG_NAMES, read_labelled, read_tsv_labels
from glimpse.tagging.vocab import load_vocabulary
from tagging_helpers import run


def test_tag_metrics_hand_computed():
    scores = np.array([[0.9, 0.2, 0.99], [0.8, 0.7, 0.0], [0.3, 0.6, 0.0], [0.1, 0.4, 0.0]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]], dtype=bool)
    report = tag_metrics(scores, targets, np.array([0.5, 0.65, 0.5]), ["a", "b", "c"])
    a, b, c = (report["per_class"][n] for n in "abc")
    # a: ranked T F T F -> AP (1/1 + 2/3) / 2; predicted rows 0, 1 -> tp 1, fp 1, fn 1.
    assert a["ap"] == pytest.approx(5 / 6) and (a["tp"], a["fp"], a["fn"]) == (1, 1, 1)
    assert a["precision"] == 0.5 and a["recall"] == 0.5
    # b: ranked T T T F -> AP 1; only 0.7 > 0.65 -> P 1, R 1/3.
    assert b["ap"] == 1.0 and b["precision"] == 1.0 and b["recall"] == pytest.approx(1 / 3)
    # c: no positive -> AP and recall undefined; its one prediction is a false positive.
    assert c["ap"] is None and c["recall"] is None and c["precision"] == 0.0 and c["positives"] == 0
    assert report["map"] == pytest.approx((5 / 6 + 1) / 2)
    # micro: tp 2, fp 2, fn 3.
    assert report["precision"] == 0.5 and report["recall"] == pytest.approx(0.4)
    assert report["f1"] == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert report["classes_with_positives"] == 2
    # A threshold equal to the score does not predict (strictly greater, as `glimpse tag`).
    tie = tag_metrics(np.array([[0.5]]), np.array([[True]]), np.array([0.5]), ["x"])
    assert tie["per_class"]["x"]["tp"] == 0 and tie["per_class"]["x"]["precision"] is None
    with pytest.raises(UserInputError, match="thresholds"):
        tag_metrics(scores, targets, np.array([0.5]), ["a", "b", "c"])


def test_tsv_labels_reader(tmp_path):
    for i in range(3):
        make_photo(tmp_path / f"p{i}.jpg", seed=i)
    (tmp_path / "labels.tsv").write_text("# comment\np0.jpg\tdog, cat\np1.jpg\tcat\np2.jpg\t\n", encoding="utf-8")
    data = read_tsv_labels(tmp_path / "labels.tsv")
    assert data.classes == ["dog", "cat"]
    assert data.targets.tolist() == [[True, True], [False, True], [False, False]]
    assert data.paths[0] == str((tmp_path / "p0.jpg").resolve())
    (tmp_path / "bad.tsv").write_text("p0.jpg\tdog\nmissing.jpg\tcat\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad.tsv:2: image .*missing.jpg does not exist"):
        read_tsv_labels(tmp_path / "bad.tsv")
    (tmp_path / "notab.tsv").write_text("p0.jpg dog\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"notab\.tsv:1"):
        read_tsv_labels(tmp_path / "notab.tsv")
    with pytest.raises(UserInputError, match="not a YOLO folder"):
        read_labelled(tmp_path)


def test_coco128_labels_map_to_vocabulary_tags():
    root = shared_data("coco128")
    data = read_labelled(root)
    assert data.targets.shape == (128, 80)
    assert "computer mouse" in data.classes and "mouse" not in data.classes
    assert data.targets[:, data.classes.index("person")].sum() > 0
    vocab = load_vocabulary()
    # Every COCO class is a tag of the built-in vocabulary, so `glimpse eval tags coco128` measures all 80.
    assert [c for c in data.classes if vocab.index_of(c) is None] == []
    assert set(COCO_TAG_NAMES.values()) <= set(data.classes)


@pytest.fixture()
def labelled(tmp_path):
    """Six photos labelled with vocabulary tags, one unknown class, and one unreadable file."""
    lines = []
    tags = ["dog,cat", "cat", "dog", "", "car", "dog,car"]
    for i, t in enumerate(tags):
        make_photo(tmp_path / f"p{i}.jpg", seed=10 + i)
        lines.append(f"p{i}.jpg\t{t}")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    lines.append("broken.jpg\tdog,unicorn-xyz")
    (tmp_path / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "labels.tsv"


def test_evaluate_tagger_scores_readable_images_on_known_classes(labelled, tiny_clip, small_vocab):
    from glimpse.registry import load_encoder
    from glimpse.tagging.clip_tagger import ClipTagger
    from glimpse.tagging.labelled import score_files

    tagger = ClipTagger(load_encoder(str(tiny_clip)))
    data = read_tsv_labels(labelled)
    report = evaluate_tagger(tagger, data)
    assert report["images"] == 6 and len(report["failed"]) == 1 and report["failed"][0]["path"].endswith("broken.jpg")
    assert report["not_in_vocabulary"] == ["unicorn-xyz"]
    assert list(report["per_class"]) == ["dog", "cat", "car"]
    # The same numbers as the metric on the tagger's own scores of the six readable photos.
    scored = score_files(tagger, data.paths[:6])
    cols = [tagger.vocab.index_of(n) for n in ("dog", "cat", "car")]
    expected = tag_metrics(scored.scores[:, cols], data.targets[:6, :3], tagger.vocab.thresholds[cols],
                           ["dog", "cat", "car"])
    assert report["map"] == pytest.approx(expected["map"])
    assert report["per_class"] == expected["per_class"]
    everything = evaluate_tagger(tagger, data, threshold=0.0)
    assert all(row["recall"] == 1.0 for row in everything["per_class"].values())


def test_eval_tags_and_calibration_commands(labelled, tmp_path, tiny_clip, small_vocab):
    base = ("--model", str(tiny_clip))
    code, out = run(*base, "eval", "tags", str(labelled), "--json")
    assert code == 0, out
    before = json.loads(out)
    assert before["images"] == 6 and set(before["per_class"]) == {"dog", "cat", "car"}

    thresholds = tmp_path / "thresholds.json"
    code, out = run(*base, "tag-calibrate", str(labelled), "--out", str(thresholds), "--json")
    assert code == 0, out
    report = json.loads(out)
    saved = json.loads(thresholds.read_text(encoding="utf-8"))
    assert set(saved["thresholds"]) == {"dog", "cat", "car"} and saved["source"] == before["source"]
    assert {n: r["threshold"] for n, r in report["tags"].items()} == saved["thresholds"]

    code, out = run(*base, "eval", "tags", str(labelled), "--calibrated", str(thresholds), "--json")
    after = json.loads(out)
    for name, row in after["per_class"].items():
        assert row["threshold"] == pytest.approx(saved["thresholds"][name], abs=1e-6)
        tp, fp, fn = row["tp"], row["fp"], row["fn"]
        # Best-F1 cut on these very examples: the F1 the calibration reported, never worse than before.
        assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(report["tags"][name]["f1"])
        old = before["per_class"][name]
        assert report["tags"][name]["f1"] >= 2 * old["tp"] / (2 * old["tp"] + old["fp"] + old["fn"]) - 1e-12

    photo = str(labelled.parent / "p0.jpg")
    code, out = run(*base, "tag", photo, "--threshold", "0", "--only", "dog,cat,car", "--json")
    scores = {t["tag"]: t["score"] for t in json.loads(out)[0]["tags"]}
    code, out = run(*base, "tag", photo, "--calibrated", str(thresholds), "--only", "dog,cat,car", "--json")
    assert code == 0, out
    shown = json.loads(out)[0]["tags"]
    assert {t["tag"] for t in shown} == {n for n, s in scores.items() if s > saved["thresholds"][n]}
    for tag in shown:
        assert tag["threshold"] == pytest.approx(saved["thresholds"][tag["tag"]], abs=1e-6)

    assert run(*base, "tag-calibrate", str(labelled), "--out", str(tmp_path))[0] == 1
    assert run(*base, "eval", "tags", str(tmp_path / "nothing"))[0] == 1
