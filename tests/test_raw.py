"""Camera RAW decoding through LibRaw on DNGs written in the test: preview vs demosaic, EXIF, bad files."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dng_fixtures import two_colour_picture, write_dng
from glimpse import raw as raw_module
from glimpse.errors import ImageError, ImageTooLargeError
from glimpse.images import decode_image, is_candidate, open_regular_file
from glimpse.metadata import TAKEN_EXIF, read_metadata
from glimpse.raw import INSTALL_HINT, RawSupportMissingError, decode_raw

pytest.importorskip("rawpy")


def decode(path, min_side=None, max_megapixels=100.0):
    with open_regular_file(path) as fh:
        return decode_image(fh, min_side=min_side, max_megapixels=max_megapixels)


def halves(image) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(image, dtype=np.float32)
    w = a.shape[1]
    return a[:, : w // 4].mean(axis=(0, 1)), a[:, -w // 4 :].mean(axis=(0, 1))


def assert_red_then_blue(image):
    left, right = halves(image)
    assert left[0] > 150 > left[2], left  # red
    assert right[2] > 150 > right[0], right  # blue


def test_a_large_enough_preview_is_used(tmp_path):
    picture = two_colour_picture(256, 384)
    path = write_dng(tmp_path / "IMG_0001.DNG", picture, preview=picture[::2, ::2].copy())  # 128 x 192 preview
    with open_regular_file(path) as fh:
        image, width, height, exif, how = decode_raw(fh, min_side=100, max_pixels=None, too_large=None)
    assert how == "preview" and image.size == (192, 128)
    assert (width, height) == (384, 256)  # the sensor's picture, not the preview's
    assert_red_then_blue(image)
    meta = read_metadata(exif)
    assert meta.taken_local == "2022-07-14T09:30:00" and meta.taken_source == TAKEN_EXIF
    assert meta.camera == "Glimpse Test Cam"


def test_a_small_preview_or_none_means_a_half_size_demosaic(tmp_path):
    picture = two_colour_picture(256, 384)
    small = write_dng(tmp_path / "small.dng", picture, preview=picture[::8, ::8].copy())  # 32 px preview
    plain = write_dng(tmp_path / "plain.dng", picture)
    for path in (small, plain):
        with open_regular_file(path) as fh:
            image, width, height, exif, how = decode_raw(fh, min_side=100, max_pixels=None, too_large=None)
        assert how == "demosaic" and image.size == (192, 128)  # one pixel per 2x2 Bayer cell
        assert (width, height) == (384, 256)
        assert_red_then_blue(image)
        assert read_metadata(exif).make == "Glimpse"


def test_decode_image_and_the_indexer_candidates_know_raw_by_name(tmp_path):
    picture = two_colour_picture(128, 192)
    path = write_dng(tmp_path / "photo.nef", picture)  # a DNG named .nef: LibRaw reads the content
    decoded = decode(path, min_side=32)
    assert decoded.format == "NEF" and (decoded.width, decoded.height) == (192, 128)
    assert decoded.exif is not None and read_metadata(decoded.exif).model == "Test Cam"
    assert_red_then_blue(decoded.image)
    for name in ("a.CR3", "b.arw", "c.raf", "d.orf", "e.rw2", "f.dng"):
        assert is_candidate(tmp_path / name, b"\0" * 16)


def test_the_pixel_limit_is_checked_before_demosaicing(tmp_path):
    path = write_dng(tmp_path / "big.dng", two_colour_picture(128, 192))
    with pytest.raises(ImageTooLargeError, match="MP"):
        decode(path, max_megapixels=0.01)  # 24,576 pixels > 10,000


@pytest.mark.parametrize("content", [b"", b"not a raw file at all" * 50, b"II*\x00" + b"\xff" * 200])
def test_unreadable_raw_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "broken.cr2"
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        decode(path)
    message = str(info.value)
    assert "\n" not in message and ("RAW" in message or "empty" in message)


def test_a_truncated_dng_is_an_error_not_a_crash(tmp_path):
    full = write_dng(tmp_path / "full.dng", two_colour_picture(128, 192)).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(full[: len(full) // 3])
    try:
        decoded = decode(cut)
    except ImageError as exc:  # LibRaw may refuse it ...
        assert "\n" not in str(exc)
    else:  # ... or read what is there; either way the run goes on
        assert decoded.image.size[0] > 0


def test_without_rawpy_the_error_says_what_to_install(tmp_path, monkeypatch):
    path = write_dng(tmp_path / "x.dng", two_colour_picture(64, 64))
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import rawpy now raises ImportError
    raw_module.raw_support.cache_clear()
    try:
        with pytest.raises(RawSupportMissingError, match=r"glimpse\[raw\]"):
            decode(path)
        assert "pip install" in INSTALL_HINT
    finally:
        raw_module.raw_support.cache_clear()


def test_indexing_without_rawpy_reports_raw_files_once_and_retries_them_after_the_install(tmp_path, open_lib,
                                                                                          monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_dng(photos / f"IMG_{i}.DNG", two_colour_picture(64, 96)[:, ::-1] if i else two_colour_picture(64, 96))
    lib = open_lib()
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "rawpy", None)  # import rawpy fails inside this block
        raw_module.raw_support.cache_clear()
        try:
            report = lib.index([photos])
        finally:
            raw_module.raw_support.cache_clear()
    assert report.failed == 0 and report.errors == [] and report.skipped == 3
    assert report.missing_support == {INSTALL_HINT: 3}
    again = lib.index([photos])  # rawpy is back: the skipped files are tried again and indexed
    assert again.added + again.updated == 3 and again.encoded >= 2 and again.failed == 0
    assert len(lib.indexed_files()) == 3
