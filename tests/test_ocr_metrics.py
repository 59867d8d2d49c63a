"""The OCR benchmark's metrics (benchmarks/ocr_metrics.py) on hand-worked examples, and its set (a) generator."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from ocr_metrics import (  # benchmarks/ is not a package: imported by path
    GtLine,
    PredLine,
    Scores,
    inside_gt,
    levenshtein,
    line_matches,
    normalise,
    overlap_fraction,
    score_image,
    script_of,
    search_recall_at_1,
    similarity,
    substring_distance,
    word_in_truth,
    words,
)
from ocr_textset import EN_FONTS, ZH_FONTS, generate


def test_normalise_folds_width_case_and_whitespace():
    assert normalise("  Ｆｒｅｓｈ\u3000Coffee\n") == "freshcoffee"  # full-width letters and space
    assert normalise("STRASSE Straße") == "strassestrasse"            # casefold, not lower()
    assert normalise("出口 ２") == "出口2"
    assert words("Fresh  Coffee ") == ["fresh", "coffee"]
    assert words("欢迎光临") == ["欢迎光临"]


def test_edit_distances():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("出口", "入口") == 1
    assert substring_distance("abc", "xxabcxx") == 0
    assert substring_distance("juice", "dofuice") == 1   # best substring "fuice": one substitution
    assert substring_distance("abc", "") == 3
    assert similarity("exit", "exlt") == pytest.approx(0.75)
    assert similarity("", "") == 1.0


def test_line_matching_threshold_and_containment():
    assert line_matches("warning", "warn1ng")            # 1 - 1/7 = 0.857 >= 0.8
    assert not line_matches("exit", "exlt")              # 0.75 < 0.8
    assert line_matches("exit", "exlt", threshold=0.75)
    assert line_matches("exit", "emergencyexit")         # GT inside a merged prediction
    assert not line_matches("emergencyexit", "exit")     # a fragment does not recall the whole line
    assert not line_matches("", "exit")
    assert script_of("A出口") == "zh" and script_of("EXIT 4") == "en"


def test_score_image_hand_worked():
    gts = [GtLine("Fresh Coffee", "en"), GtLine("出口", "zh"), GtLine("WARNING", "en")]
    preds = [PredLine("FreshCoffee", 0.9), PredLine("出口", 0.99), PredLine("WARN1NG", 0.8),
             PredLine("xyz", 0.6), PredLine("  ", 0.5)]
    s = Scores()
    score_image(gts, preds, s)
    en, zh, both = s.by_script["en"], s.by_script["zh"], s.by_script["all"]
    # Lines: every GT line is found ("warn1ng" by similarity); "xyz" is the one wrong prediction and the
    # blank prediction is not counted at all.
    assert (en.gt_lines, en.gt_found, en.pred_lines, en.pred_correct) == (2, 2, 3, 2)
    assert (zh.line_recall, zh.line_precision) == (1.0, 1.0)
    assert both.line_precision == pytest.approx(3 / 4)
    # CER over matched lines: 0 edits in "freshcoffee" (11) + 1 in "warning" (7).
    assert en.cer == pytest.approx(1 / 18)
    assert zh.cer == 0.0
    # Whitespace words: the dropped space makes "freshcoffee" match neither "fresh" nor "coffee".
    assert (en.gt_words, en.pred_words, en.gt_words_found) == (3, 3, 0)
    assert (zh.word_recall, zh.word_precision) == (1.0, 1.0)
    # Substring words: "fresh" and "coffee" occur inside "freshcoffee"; "warning" is in no prediction.
    assert en.sub_word_recall == pytest.approx(2 / 3)
    # ... and of the predicted words only "freshcoffee" occurs inside a GT line.
    assert en.sub_word_precision == pytest.approx(1 / 3)
    assert both.sub_word_recall == pytest.approx(3 / 4)


def test_partial_reading_is_precise_but_does_not_recall():
    s = Scores()
    score_image([GtLine("Beef Noodles", "en")], [PredLine("Noodles"), PredLine("N")], s)
    en = s.by_script["en"]
    assert en.line_recall == 0.0          # "noodles" is too unlike "beefnoodles" (0.636)
    assert en.pred_correct == 1           # "noodles" is a correct partial reading; "n" is too short
    assert en.word_recall == pytest.approx(1 / 2) and en.word_precision == pytest.approx(1 / 2)
    assert math.isnan(en.cer)             # no matched line


def test_inside_gt_uses_the_item_polygon_not_its_bounding_rectangle():
    """A rotated item: photo text in a corner of its bounding rectangle is off the item itself."""
    diamond = ((50, 20), (80, 50), (50, 80), (20, 50))  # a square turned 45 degrees; rectangle 20..80
    gt = [GtLine("SALE", "en", diamond)]
    corner = PredLine("STOP", 0.9, ((20, 20), (35, 20), (35, 35), (20, 35)))  # inside the rectangle only
    centre = PredLine("SALE", 0.9, ((40, 45), (60, 45), (60, 55), (40, 55)))
    assert inside_gt([corner, centre], gt) == [centre]
    assert overlap_fraction(corner.box, diamond) == pytest.approx(0.0, abs=1e-9)
    assert overlap_fraction(centre.box, diamond) == pytest.approx(1.0)
    # Half of this square is the triangle (50,50) (80,50) (50,80); point order and orientation do not matter.
    square = ((80, 80), (50, 80), (50, 50), (80, 50))
    assert overlap_fraction(square, diamond) == pytest.approx(0.5)
    assert overlap_fraction(square, diamond[::-1]) == pytest.approx(0.5)


def test_inside_gt_keeps_predictions_lying_mostly_on_an_item():
    gt = [GtLine("EXIT", "en", ((10, 10), (50, 10), (50, 30), (10, 30)))]
    near = PredLine("EXIT", 0.9, ((12, 12), (56, 12), (56, 28), (12, 28)))   # 38x16 of 44x16 inside
    straddling = PredLine("POLO", 0.9, ((40, 25), (80, 25), (80, 40), (40, 40)))  # 10x5 of 40x15
    far = PredLine("STOP", 0.9, ((100, 100), (140, 100), (140, 120), (100, 120)))
    assert inside_gt([near, straddling, far], gt) == [near]
    assert inside_gt([near, straddling, far], gt, min_fraction=0.05) == [near, straddling]
    s = Scores()
    score_image(gt, [near, straddling, far], s, only_inside=True)
    assert (s.by_script["en"].pred_lines, s.by_script["en"].pred_outside) == (1, 2)
    assert s.by_script["en"].line_precision == 1.0
    # Recall does not look at boxes: a reading of the item somewhere else still finds it ...
    s = Scores()
    score_image(gt, [PredLine("EXIT", 0.9, far.box)], s, only_inside=True)
    assert (s.by_script["en"].line_recall, s.by_script["en"].word_recall) == (1.0, 1.0)
    # ... while precision has nothing left to score.
    assert s.by_script["en"].pred_lines == 0 and math.isnan(s.by_script["en"].word_precision)


def test_search_recall_at_1_hand_worked():
    truth = {
        "1": [GtLine("EXIT", "en")], "2": [GtLine("exit 4", "en")], "3": [GtLine("出口", "zh")],
        "4": [GtLine("STOP", "en")], "5": [GtLine("open", "en")], "6": [GtLine("sale", "en")],
    }
    predicted = {
        "1": [PredLine("EXIT", 0.9), PredLine("stop", 0.5)],
        "2": [PredLine("EXIT4", 0.95)],       # the best "exit" match; its GT contains "exit" -> hit
        "3": [PredLine("出口", 0.8)],           # hit
        "4": [],                               # "stop" only found on image 1 -> miss
        "5": [PredLine("OPEN", 0.7)],
        "6": [PredLine("open", 0.7)],         # tie with a wrong image -> miss; "sale" never read -> miss
    }
    s = Scores()
    search_recall_at_1(truth, predicted, s)
    # Queries: exit, stop, open, sale (en; "4" is too short), 出口 (zh).
    assert (s.search_queries["en"], s.search_hits["en"]) == (4, 1)
    assert (s.search_queries["zh"], s.search_hits["zh"]) == (1, 1)
    assert s.search_r1("all") == pytest.approx(2 / 5)


def test_textset_is_deterministic_and_its_polygons_cover_the_text(tmp_path):
    from conftest import shared_data

    photos = shared_data("coco128", "images")
    if not all(Path(f).is_file() for f, _ in EN_FONTS + ZH_FONTS):
        pytest.skip("the DejaVu / Noto CJK fonts are not installed")
    first = generate(tmp_path / "a", images=3, photos=photos)
    second = generate(tmp_path / "b", images=3, photos=photos)
    assert first == second
    for truth in first:
        a = (tmp_path / "a" / truth["image"]).read_bytes()
        assert a == (tmp_path / "b" / truth["image"]).read_bytes()
        assert 1 <= len(truth["items"]) <= 4 and 60 <= truth["jpeg_quality"] <= 95
        generated = np.asarray(Image.open(tmp_path / "a" / truth["image"]).convert("RGB"), dtype=np.float32)
        original = np.asarray(Image.open(photos / truth["source"]).convert("RGB"), dtype=np.float32)
        mask = Image.new("L", (generated.shape[1], generated.shape[0]), 0)
        for item in truth["items"]:
            assert 12 <= item["size_px"] <= 96 and abs(item["angle_deg"]) <= 20
            assert (script_of(item["text"]) == "zh") == (item["script"] == "zh")
            ImageDraw.Draw(mask).polygon([tuple(p) for p in item["polygon"]], fill=255)
        inside = np.asarray(mask) > 0
        change = np.abs(generated - original).mean(axis=2)
        # The text changed the pixels inside its polygons; outside them only JPEG re-encoding did.
        assert change[inside].mean() > 4 * change[~inside].mean()


def test_a_line_over_two_neighbouring_items_is_a_precise_word():
    """One detector line over two items side by side: recall finds both items in it, and precision counts it
    as correct (it is inside the two joined); a word that is in neither join stays wrong."""
    gts = [GtLine("三楼", "zh"), GtLine("香蕉", "zh"), GtLine("EXIT", "en")]
    s = Scores()
    score_image(gts, [PredLine("三楼香蕉"), PredLine("香蕉三楼"), PredLine("楼香"), PredLine("三香")], s)
    zh = s.by_script["zh"]
    assert zh.sub_word_recall == 1.0
    assert zh.pred_words_sub_correct == 3 and zh.pred_words == 4  # "三香" is in no join of two items
    assert word_in_truth("ext", ["exit", "tower"]) is False and word_in_truth("ittow", ["exit", "tower"]) is True
