"""Metric functions against hand-computed cases, plus the classification/retrieval reports and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glimpse.errors import UserInputError
from glimpse.evaluate import (
    average_precision,
    classification_report,
    confusion_matrix,
    mean_average_precision,
    mrr,
    per_class_accuracy,
    precision_at_k,
    recall_at_k,
    retrieval_report,
    top_k_accuracy,
)

# 3 queries x 4 items. Rankings (best first): q0: 2,0,3,1  q1: 0,1,2,3  q2: 3,2,1,0
SCORES = np.array([
    [0.5, 0.1, 0.9, 0.3],
    [0.8, 0.7, 0.2, 0.1],
    [0.1, 0.2, 0.3, 0.4],
])
RELEVANT = np.array([
    [False, True, False, False],   # relevant item 1 at rank 4
    [True, False, True, False],    # relevant at ranks 1 and 3
    [False, False, False, False],  # nothing relevant
])


def test_recall_at_k_hand_computed():
    assert recall_at_k(SCORES, RELEVANT, 1) == pytest.approx(1 / 3)  # only q1
    assert recall_at_k(SCORES, RELEVANT, 3) == pytest.approx(1 / 3)
    assert recall_at_k(SCORES, RELEVANT, 4) == pytest.approx(2 / 3)  # q0 finds item 1 at rank 4


def test_precision_at_k_hand_computed():
    # k=1: q1 1/1, others 0 -> 1/3. k=3: q0 0, q1 2/3, q2 0 -> (2/3)/3.
    assert precision_at_k(SCORES, RELEVANT, 1) == pytest.approx(1 / 3)
    assert precision_at_k(SCORES, RELEVANT, 3) == pytest.approx(2 / 9)


def test_mrr_hand_computed():
    # q0: first relevant at rank 4 -> 1/4; q1: rank 1 -> 1; q2: none -> 0.
    assert mrr(SCORES, RELEVANT) == pytest.approx((0.25 + 1.0 + 0.0) / 3)


def test_average_precision_hand_computed():
    # ranking relevance: 1,0,1,0,1 -> precisions at hits 1/1, 2/3, 3/5
    scores = np.array([5, 4, 3, 2, 1], dtype=float)
    relevant = np.array([1, 0, 1, 0, 1], dtype=bool)
    assert average_precision(scores, relevant) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(UserInputError):
        average_precision(scores, np.zeros(5, dtype=bool))


def test_map_multi_label_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.6, 0.3, 0.1]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    # class 0 ranking: rows 0 (0.9), 2 (0.6), 1 -> both positives first: AP 1. Others have no positive.
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    targets[1, 1] = True  # class 1: row 1 ranked first (0.8) -> AP 1
    targets[2, 2] = True  # class 2: rows 0 (0.5), 1 (0.4), 2 (0.1) -> hit at rank 3 -> AP 1/3
    assert mean_average_precision(scores, targets) == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_top_k_accuracy_confusion_and_per_class():
    scores = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.5, 0.4], [0.2, 0.5, 0.3]])
    labels = np.array([0, 1, 2, 1])
    # top-1 predictions: 0, 2, 1, 1 -> correct rows 0 and 3
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(0.5)
    # top-2: row1 {2, 0 (stable tie before 1)} misses 1; row2 {1, 2} hits -> 3/4
    assert top_k_accuracy(scores, labels, 2) == pytest.approx(0.75)
    matrix = confusion_matrix(scores.argmax(1), labels, 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 0]]
    np.testing.assert_allclose(per_class_accuracy(matrix), [1.0, 0.5, 0.0])
    report = classification_report(scores, labels, ["a", "b", "c"])
    assert report["top1"] == pytest.approx(0.5) and report["per_class"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    json.dumps(report)  # JSON-ready


def test_retrieval_report_matches_the_metrics():
    report = retrieval_report(SCORES[:2], RELEVANT[:2], ks=(1, 4))
    assert report["recall"] == {"1": pytest.approx(0.5), "4": pytest.approx(1.0)}
    assert report["mrr"] == pytest.approx((0.25 + 1) / 2)
    # per-query AP: q0 one hit at rank 4 -> 1/4; q1 hits at 1 and 3 -> (1 + 2/3)/2
    assert report["map"] == pytest.approx((0.25 + (1 + 2 / 3) / 2) / 2)


def test_shape_mismatch_is_a_user_error():
    with pytest.raises(UserInputError):
        recall_at_k(SCORES, RELEVANT[:2], 1)


def test_eval_classify_cli_with_plot_and_probe(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from conftest import make_photo
    from glimpse.cli import app

    for c, name in enumerate(["red_thing", "blue_thing"]):
        for i in range(3):
            make_photo(tmp_path / "data" / name / f"{i}.png", seed=10 * c + i)
    runner = CliRunner()
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    result = runner.invoke(app, [*base, "train", "probe", str(tmp_path / "data"), str(tmp_path / "p.glimpse"),
                                 "--kind", "prototype", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*base, "eval", "classify", str(tmp_path / "data"), "--probe",
                                 str(tmp_path / "p.glimpse"), "--plot", str(tmp_path / "r.png"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["zero_shot"]["images"] == 6 and report["zero_shot"]["classes"] == ["blue thing", "red thing"]
    # The prototype of 3 distinct embeddings per class is closest to its own members on this training set.
    assert report["probe"]["top1"] == pytest.approx(1.0)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_retrieval_cli_coco_json(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from conftest import make_photos
    from glimpse.cli import app

    paths = make_photos(tmp_path / "imgs", 3)
    coco = {"images": [{"id": i, "file_name": p.name} for i, p in enumerate(paths)],
            "annotations": [{"image_id": i, "caption": f"picture number {i}"} for i in range(3)]
            + [{"image_id": 0, "caption": "another caption"}]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip), "eval",
                                      "retrieval", "--images", str(tmp_path / "imgs"), "--captions",
                                      str(tmp_path / "captions.json"), "--ks", "1,3", "--plot",
                                      str(tmp_path / "r.png"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["text_to_image"]["queries"] == 4 and report["image_to_text"]["queries"] == 3
    # With 3 images, every caption finds its image within the top 3.
    assert report["text_to_image"]["recall"]["3"] == pytest.approx(1.0)
    assert (tmp_path / "r.png").is_file()


def test_eval_multilabel_cli_on_coco128_labels(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from conftest import shared_data
    from glimpse.cli import app

    root = shared_data("coco128")
    # A 12-image subset keeps the test fast; the labels folder is the real one.
    (tmp_path / "images").mkdir()
    for path in sorted((root / "images").iterdir())[:12]:
        (tmp_path / "images" / path.name).symlink_to(path)
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip), "eval",
                                      "multilabel", "--images", str(tmp_path / "images"), "--labels",
                                      str(root / "labels"), "--classes", str(root / "classes.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 12 and 0 < report["map"] <= 1
    assert report["map"] == pytest.approx(np.mean(list(report["per_class_ap"].values())))
    assert "person" in report["per_class_ap"]
