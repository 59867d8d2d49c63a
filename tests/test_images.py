"""glimpse.images: recognition, robust decoding, colour modes, orientation, draft, bomb guard, errors."""

from __future__ import annotations

import errno
import io
import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from glimpse import images
from glimpse.errors import GlimpseError, ImageError, ImageTooLargeError, UserInputError
from glimpse.images import (
    DEFAULT_MAX_MEGAPIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    decode_image,
    is_candidate,
    open_image,
    sniff_format,
)
from hostile import (
    BLACK,
    BLUE,
    RED,
    WHITE,
    HostileCorpus,
    encode,
    halves,
    make_hostile_corpus,
    picture,
    png_header_only,
)

PILLOW_MAX_PIXELS = Image.MAX_IMAGE_PIXELS


def _data_dir() -> Path:
    env = os.environ.get("GLIMPSE_TEST_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_dir(*parts: str) -> Path:
    path = _data_dir().joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"test data {path} is not available")
    return path


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected, strict=True))


def rgb_at(decoded: DecodedImage, xy: tuple[int, int]) -> tuple[int, int, int]:
    return decoded.image.getpixel(xy)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> HostileCorpus:
    return make_hostile_corpus(tmp_path_factory.mktemp("hostile"))


def entry(corpus: HostileCorpus, key: str):
    if key not in corpus:
        pytest.skip(f"{key} could not be created on this file system")
    return corpus[key]


@pytest.fixture(autouse=True)
def _pillow_globals_untouched():
    """No test (and no code under test) may leave Pillow's process-wide switches changed."""
    yield
    assert Image.MAX_IMAGE_PIXELS == PILLOW_MAX_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- recognition -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "expected"),
    [
        ("JPEG", {}, "JPEG"),
        ("PNG", {}, "PNG"),
        ("GIF", {}, "GIF"),
        ("WEBP", {}, "WEBP"),
        ("BMP", {}, "BMP"),
        ("TIFF", {}, "TIFF"),
        ("PPM", {}, "PPM"),
        ("JPEG2000", {}, "JPEG2000"),
    ],
)
def test_sniff_recognises_pillow_output(fmt: str, params: dict, expected: str) -> None:
    data = encode(picture(0, (16, 12)), fmt, **params)
    assert sniff_format(data[: images.SNIFF_BYTES]) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
        (b"II+\x00\x08\x00\x00\x00", "TIFF"),  # BigTIFF
        (b"P1\n2 2\n0 1\n1 0\n", "PPM"),
        (b"P2\n# made by hand\n2 1\n255\n0 255\n", "PPM"),
        (b"P4 32 32\n\x00\x00", "PPM"),
        (struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic", "HEIF"),
        (struct.pack(">I", 28) + b"ftypmif1\x00\x00\x00\x00mif1miafavif", "AVIF"),
        (struct.pack(">I", 20) + b"ftypavif\x00\x00\x00\x00avif", "AVIF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"\xef\xbb\xbf  \n<?xml version='1.0'?>\n<!-- x -->\n<svg></svg>", "SVG"),
        (b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN">\n<svg/>', "SVG"),
        # Look-alikes that are not images.
        (b"P1 is our first priority\n", None),
        (b"BMW service record, 2019\n", None),
        (struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2", None),  # an MP4 video
        (b"<?xml version='1.0'?><feed></feed>", None),
        (b"<html><body>hi</body></html>", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_extensions_are_lower_case_with_dot() -> None:
    assert {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
            ".pnm", ".heic", ".heif", ".avif", ".svg"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


def test_is_candidate_by_extension_or_content(corpus: HostileCorpus, tmp_path: Path) -> None:
    for f in corpus.files.values():
        assert is_candidate(f.raw) is f.candidate, f.key
        assert is_candidate(f.path) is f.candidate, f.key
    upper = tmp_path / "IMG_0001.JPG"
    upper.write_bytes(b"")
    assert is_candidate(upper)
    # With ``head`` given the file is not opened at all (the scanner has read it already).
    missing = tmp_path / "nowhere" / "blob.bin"
    assert is_candidate(missing, head=b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    assert not is_candidate(missing, head=b"hello")
    assert not is_candidate(missing)  # unreadable and no image extension


# -- the hostile corpus ------------------------------------------------------------------------------------

GOOD_KEYS = ["jpeg", "cmyk_jpeg", "png16", "palette_png", "animated_gif", "exif_rotated", "la_png", "onebit_png",
             "onebit_pbm", "webp", "bmp", "tiff", "jpeg_named_png", "jpeg_named_dat", "nested_jpeg",
             "non_utf8_name", "avif", "line_png"]
BAD_KEYS = ["empty", "truncated_jpeg", "bomb_png", "svg", "text_as_jpg", "html_as_jpg", "noise_jpg", "heic_stub",
            "self_symlink", "directory_jpg", "unreadable", "fifo_jpg", "device_link_jpg"]


def test_corpus_is_complete_and_documented(corpus: HostileCorpus) -> None:
    assert set(corpus.files) | set(corpus.skipped) == set(GOOD_KEYS) | set(BAD_KEYS) | {"readme", "dir_loop"}
    assert corpus.good_paths == {f.path for f in corpus.files.values() if f.good}
    for f in corpus.bad:
        assert f.reason, f.key
    assert corpus["unreadable"].good is corpus.privileged
    assert os.path.islink(entry(corpus, "dir_loop").raw)
    assert os.path.samefile(entry(corpus, "dir_loop").raw, corpus.root)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_corpus_files_decode(corpus: HostileCorpus, key: str) -> None:
    f = entry(corpus, key)
    decoded = open_image(f.raw)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (decoded.width, decoded.height)
    assert decoded.format == sniff_format(Path(os.fsdecode(f.raw)).read_bytes()[:512])


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_corpus_files_fail_with_their_reason(corpus: HostileCorpus, key: str) -> None:
    f = entry(corpus, key)
    if f.good:  # only "unreadable", when running as root: chmod 000 does not stop CAP_DAC_OVERRIDE
        assert key == "unreadable" and corpus.privileged
        assert open_image(f.raw).image.mode == "RGB"
        return
    with pytest.raises(ImageError) as info:
        open_image(f.raw, min_side=224)
    message = str(info.value)
    assert f.reason in message
    assert "\n" not in message and len(message) < 200


def test_unreadable_file_reason_is_permission_denied(monkeypatch: pytest.MonkeyPatch, corpus: HostileCorpus) -> None:
    """EACCES as a read gets it without root, whoever runs the test."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(images.os, "open", refuse)
    with pytest.raises(ImageError, match=r"^cannot read file: permission denied$"):
        open_image(corpus["jpeg"].raw)


def test_special_files_do_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # a plain open() would wait for a writer forever
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(fifo)
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "missing.jpg")


# -- colour modes ------------------------------------------------------------------------------------------


def test_cmyk_jpeg_has_correct_colours(corpus: HostileCorpus) -> None:
    raw = Path(os.fsdecode(corpus["cmyk_jpeg"].raw)).read_bytes()
    assert b"Adobe" in raw  # the Photoshop-style inverted CMYK that readers get wrong
    decoded = open_image(corpus["cmyk_jpeg"].raw)
    assert close(rgb_at(decoded, (6, 16)), RED, tol=20)
    assert close(rgb_at(decoded, (40, 16)), WHITE, tol=20)


def test_sixteen_bit_grey_is_scaled_not_clipped(corpus: HostileCorpus) -> None:
    pixels = np.asarray(open_image(corpus["png16"].raw).image)[0, :, 0].astype(int)
    assert pixels[0] == 0 and pixels[-1] == 255
    assert abs(pixels[32] - 130) <= 2  # 32/63 of the range, not 255 as clipping would give
    assert np.all(np.diff(pixels) >= 0) and len(set(pixels.tolist())) > 50


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16B", [0, 32768, 65535], [0, 128, 255]),
        ("I", [0, 32768, 65535], [0, 128, 255]),  # 16-bit data in a 32-bit container
        ("I", [0, 100, 200], [0, 100, 200]),  # 8-bit data in a 32-bit container
        ("I", [-1000, 0, 1000], [0, 128, 255]),  # anything else: its own range
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [0.0, 127.0, 255.0], [0, 127, 255]),
        ("F", [-2.0, 0.0, 2.0], [0, 128, 255]),
    ],
)
def test_high_bit_depth_tiffs_are_scaled(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = {"I;16B": ">u2", "I": "<i4", "F": "<f4"}[mode]
    im = Image.frombytes(mode, (3, 1), np.array(values, dtype=dtype).tobytes())
    data = encode(im, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    got = [decode_image(data).image.getpixel((x, 0))[0] for x in range(3)]
    assert got == expected


def test_palette_transparency_composites_over_white(corpus: HostileCorpus) -> None:
    decoded = open_image(corpus["palette_png"].raw)
    assert rgb_at(decoded, (4, 16)) == WHITE  # transparent index (black in the palette)
    assert rgb_at(decoded, (28, 16)) == RED


def test_alpha_composites_over_white(corpus: HostileCorpus) -> None:
    la = open_image(corpus["la_png"].raw)
    assert rgb_at(la, (4, 16)) == WHITE and rgb_at(la, (28, 16)) == BLACK
    half = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    assert close(decode_image(encode(half, "PNG")).image.getpixel((4, 4)), (255, 127, 127), tol=2)
    # RGB with a tRNS colour key: that colour is transparent.
    keyed = halves("RGB", (8, 8), BLUE, RED)
    decoded = decode_image(encode(keyed, "PNG", transparency=BLUE))
    assert decoded.image.getpixel((1, 1)) == WHITE and decoded.image.getpixel((6, 1)) == RED
    # A WebP with alpha.
    webp = decode_image(encode(halves("RGBA", (8, 8), (0, 0, 0, 0), (0, 0, 255, 255)), "WEBP", lossless=True))
    assert webp.image.getpixel((1, 1)) == WHITE and webp.image.getpixel((6, 1)) == BLUE


def test_one_bit_and_grey(corpus: HostileCorpus) -> None:
    png = open_image(corpus["onebit_png"].raw)
    assert rgb_at(png, (4, 4)) == BLACK and rgb_at(png, (28, 4)) == WHITE
    pbm = open_image(corpus["onebit_pbm"].raw)
    assert rgb_at(pbm, (4, 4)) == BLACK and rgb_at(pbm, (4, 28)) == WHITE
    grey = decode_image(encode(Image.new("L", (8, 8), 77), "JPEG"), min_side=4)
    assert close(grey.image.getpixel((2, 2)), (77, 77, 77), tol=2)


def test_animations_give_their_first_frame(corpus: HostileCorpus) -> None:
    assert rgb_at(open_image(corpus["animated_gif"].raw), (16, 16)) == RED
    frames = [Image.new("RGB", (16, 16), c) for c in (BLUE, RED)]
    webp = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert decode_image(webp).image.getpixel((8, 8)) == BLUE


# -- orientation -----------------------------------------------------------------------------------------


def test_exif_rotation_size_and_placement(corpus: HostileCorpus) -> None:
    decoded = open_image(corpus["exif_rotated"].raw)  # stored 60×30 left red / right blue, orientation 6
    assert (decoded.width, decoded.height) == (30, 60) == decoded.image.size
    assert close(rgb_at(decoded, (15, 8)), RED, tol=30)
    assert close(rgb_at(decoded, (15, 52)), BLUE, tol=30)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(picture(orientation, (6, 4)), "PNG", exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    decoded = decode_image(data)
    assert (decoded.width, decoded.height) == expected.size
    assert np.array_equal(np.asarray(decoded.image), np.asarray(expected))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_broken_exif_does_not_cost_the_image() -> None:
    data = encode(picture(1, (40, 20)), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fgarbage")
    decoded = decode_image(data)
    assert (decoded.width, decoded.height) == (40, 20)


# -- JPEG draft ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encode(picture(3, (4000, 3000)), "JPEG", quality=80)


def test_draft_decodes_a_12mp_jpeg_at_one_eighth(big_jpeg: bytes) -> None:
    decoded = decode_image(big_jpeg, min_side=224)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert decoded.image.size == (500, 375)
    assert 224 <= min(decoded.image.size) < 2 * 224 * 2
    assert decode_image(big_jpeg).image.size == (4000, 3000)  # no min_side: no draft


def test_draft_keeps_orientation(big_jpeg: bytes) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    im = Image.open(io.BytesIO(big_jpeg))
    decoded = decode_image(encode(im, "JPEG", exif=exif, quality=80), min_side=224)
    assert (decoded.width, decoded.height) == (3000, 4000)
    assert decoded.image.size == (375, 500)


@pytest.mark.parametrize(
    ("size", "min_side", "expected"),
    [
        ((1799, 1792), 224, (225, 224)),  # 1792 / 8 == 224 exactly: 1/8 still allowed
        ((2000, 1785), 224, (250, 224)),  # 1785 / 8 = 223.1, which libjpeg rounds up to 224: 1/8
        ((2000, 1784), 224, (500, 446)),  # 1784 / 8 = 223 < 224: 1/4
        ((1000, 449), 224, (500, 225)),  # 1/4 would give 113: only 1/2
        ((1000, 447), 224, (500, 224)),  # 447 / 2 rounds up to 224: 1/2
        ((1000, 446), 224, (1000, 446)),  # 446 / 2 = 223: full size
        ((300, 200), 224, (300, 200)),  # already below min_side: full size
        ((640, 480), 100, (160, 120)),
        ((5, 3), 1, (3, 2)),  # tiny image, min_side 1: Pillow caps the scale (no division by zero)
    ],
)
def test_draft_scale_is_the_smallest_keeping_min_side(size: tuple[int, int], min_side: int,
                                                      expected: tuple[int, int]) -> None:
    decoded = decode_image(encode(picture(5, size), "JPEG"), min_side=min_side)
    assert decoded.image.size == expected
    assert (decoded.width, decoded.height) == size
    assert min(decoded.image.size) >= min(min_side, *size)


def test_mpo_is_a_jpeg_and_drafts() -> None:
    buf = io.BytesIO()
    picture(1, (1600, 1200)).save(buf, "MPO", save_all=True, append_images=[picture(2, (1600, 1200))])
    decoded = decode_image(buf.getvalue(), min_side=150)
    assert decoded.format == "JPEG" and decoded.image.size == (200, 150)


# -- decompression bombs ---------------------------------------------------------------------------------


def test_bomb_refused_from_the_header_without_decoding(monkeypatch: pytest.MonkeyPatch,
                                                       corpus: HostileCorpus) -> None:
    loads: list[object] = []
    original = ImageFile.ImageFile.load

    def recording_load(self):
        loads.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    with pytest.raises(ImageTooLargeError) as info:
        open_image(corpus["bomb_png"].raw)
    assert str(info.value) == "image is 30000×30000 = 900 MP, above the 100 MP limit (raise --max-megapixels)"
    assert loads == []
    assert DEFAULT_MAX_MEGAPIXELS == 100.0


def test_custom_max_megapixels() -> None:
    data = encode(Image.new("L", (2000, 1000)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"2000×1000 = 2\.0 MP, above the 1\.5 MP limit"):
        decode_image(data, max_megapixels=1.5)
    assert decode_image(data, max_megapixels=2).image.size == (2000, 1000)  # the limit itself is allowed
    assert isinstance(ImageTooLargeError("x"), ImageError)


def test_a_raised_limit_gets_past_pillows_own_guard() -> None:
    """200 MP is above Pillow's hard limit (~179 MP): with max_megapixels=300 it is our call, not Pillow's."""
    data = png_header_only(20000, 10000)
    with pytest.raises(ImageTooLargeError, match="20000×10000 = 200 MP"):
        decode_image(data)
    with pytest.raises(ImageError) as info:  # passes the guard, then fails on the missing pixel data
        decode_image(data, max_megapixels=300)
    assert not isinstance(info.value, ImageTooLargeError)
    assert "truncated PNG" in str(info.value)


def test_pillow_bomb_warning_as_error_maps_to_too_large() -> None:
    data = png_header_only(10000, 9500)  # 95 MP: above Pillow's warning threshold (~89 MP)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError, match="10000×9500 = 95 MP, above the 50 MP limit"):
            decode_image(data, max_megapixels=50)


def test_pillow_bomb_error_while_decoding_maps_to_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("Image size (900000000 pixels) exceeds limit of 178956970 pixels")

    monkeypatch.setattr(Image, "open", bomb)
    with pytest.raises(ImageTooLargeError, match="900 MP while decoding, above the 100 MP limit"):
        decode_image(encode(picture(0, (8, 8)), "PNG"))


def test_threads_share_pillow_safely(big_jpeg: bytes) -> None:
    """Bombs (which take the locked retry path) decoded alongside normal images in worker threads."""
    small = encode(picture(1, (64, 48)), "PNG")
    bomb = png_header_only(30000, 30000)
    jobs = [small, bomb, big_jpeg] * 6

    def run(data: bytes) -> str:
        try:
            return str(decode_image(data, min_side=224).image.size)
        except ImageTooLargeError:
            return "too large"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, jobs))
    assert results == ["(64, 48)", "too large", "(500, 375)"] * 6


# -- failures become one-line ImageErrors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("JPEG", "truncated JPEG"), ("PNG", "truncated PNG"), ("GIF", "truncated GIF"), ("BMP", "truncated BMP"),
     ("TIFF", "truncated TIFF"), ("PPM", "truncated PPM"), ("WEBP", "WEBP")],
)
def test_truncated_files(fmt: str, expected: str) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(ImageError, match=expected):
        decode_image(data[: len(data) // 2])


def test_empty_and_bytes_like_input() -> None:
    with pytest.raises(ImageError, match=r"^empty file$"):
        decode_image(b"")
    data = encode(picture(0, (8, 6)), "PNG")
    assert decode_image(bytearray(data)).image.size == (8, 6)
    assert decode_image(memoryview(data)).image.size == (8, 6)


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"%PDF-1.7\n", "looks like a PDF document"),
        (b"PK\x03\x04\x14\x00", "looks like a ZIP archive"),
        (struct.pack(">I", 24) + b"ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 40, "looks like a video"),
        (b'<?xml version="1.0"?><feed></feed>', "looks like text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "corrupt PNG: the header cannot be parsed"),
    ],
)
def test_not_an_image_reasons(head: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        decode_image(head)


@pytest.mark.parametrize(
    "exc",
    [
        Image.UnidentifiedImageError("cannot identify image file <_io.BytesIO object at 0x7f>"),
        OSError("decoder error -2"),
        SyntaxError("not a PNG file\nsecond line"),
        ValueError("tile cannot extend outside image"),
        EOFError(),
        struct.error("unpack requires a buffer of 4 bytes"),
        MemoryError(),
        KeyError(259),
        ZeroDivisionError("division by zero"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_decoder_exception_becomes_a_one_line_image_error(monkeypatch: pytest.MonkeyPatch,
                                                                exc: Exception) -> None:
    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(Image, "open", broken)
    with pytest.raises(ImageError) as info:
        decode_image(encode(picture(0, (8, 8)), "PNG"))
    message = str(info.value)
    assert message and "\n" not in message and "0x7f" not in message
    assert "PNG" in message
    assert info.value.__cause__ is exc


def test_unsupported_formats_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageError, match=r"^SVG vector images are not supported; convert to PNG$"):
        decode_image(b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
    monkeypatch.setattr(images, "_heif_registered", False)  # as if pillow-heif were not installed
    heic = struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic"
    with pytest.raises(ImageError, match=r"HEIC needs the optional extra: pip install 'glimpse\[heic\]'"):
        decode_image(heic)


def test_bad_arguments_are_user_errors() -> None:
    data = encode(picture(0, (8, 8)), "PNG")
    for bad in (0, -1, float("nan")):
        with pytest.raises(UserInputError):
            decode_image(data, max_megapixels=bad)
    with pytest.raises(UserInputError):
        decode_image(data, min_side=0)
    assert decode_image(data, max_megapixels=float("inf")).image.size == (8, 8)
    assert issubclass(UserInputError, GlimpseError)


# -- the shared sample data ------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["formats_images", "mixed_images"])
def test_shared_samples_decode_or_fail_cleanly(folder: str) -> None:
    directory = shared_dir("dups", folder)
    decoded: dict[str, DecodedImage] = {}
    failed: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        try:
            decoded[path.name] = open_image(path, min_side=224)
        except ImageError as exc:  # anything else propagates and fails the test
            failed[path.name] = str(exc)
        else:
            # Recognised by content: the reported format is the sniffed one, whatever the extension.
            assert decoded[path.name].format == sniff_format(path.read_bytes()[:512]), path.name
    if folder == "formats_images":
        assert failed == {}
        for wrong in ("ukbench09380.bmp", "ukbench09380.png", "ukbench09380.svg"):
            assert decoded[wrong].format == "JPEG"
            assert (decoded[wrong].width, decoded[wrong].height) == (640, 480)
        assert decoded["baboon.pgm"].format == "PPM" and decoded["giphy.gif"].format == "GIF"
    else:
        assert set(failed) == {"ukbench09268_corrupt.jpg"}
        assert failed["ukbench09268_corrupt.jpg"].startswith("not an image")
        # A real camera photo stored 640×480 with EXIF orientation 6.
        assert (decoded["ukbench09268.jpg"].width, decoded["ukbench09268.jpg"].height) == (480, 640)
