"""The one robust image opener: bytes or a path in, an RGB ``PIL.Image`` out, or an ``ImageError``.

Everything that turns a file into pixels goes through :func:`decode_image` (numpy + Pillow only, no
torch), because the indexer meets every kind of file a real photo folder holds and must never crash on
one. What it takes care of:

* **Recognition by content.** :func:`sniff_format` reads magic bytes, so a JPEG named ``.png`` decodes
  and a text file named ``photo.jpg`` fails with "not an image: looks like text".
* **Decompression bombs.** Width × height come from the header and are checked against
  ``max_megapixels`` *before* any pixel buffer is allocated (raises :class:`ImageTooLargeError`).
* **Files.** :func:`open_regular_file` is the one way glimpse opens a file to read it: never blocking (a
  FIFO or device named ``.jpg`` is refused, not waited on) and regular files only. Pillow decodes from
  that file object, reading what it needs: a file is never copied into memory whole, and one above
  :func:`max_file_bytes` (more bytes than any image within the pixel limit can take) is refused unread.
* **Speed.** JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling via ``Image.draft``) when
  the model needs fewer pixels (``min_side``); a 12 MP photo decodes about 20× faster at 1/8 scale.
  Pillow releases the GIL while decoding, so callers decode in worker threads.
* **Orientation.** The EXIF orientation is applied; the reported size is the full-resolution size as
  displayed (after rotation), whatever scale the pixels were decoded at.
* **Colour.** Every mode becomes 8-bit RGB: CMYK (Adobe-inverted JPEGs included), 16/32-bit integer and
  float greyscale (scaled, not clipped), palette/alpha images composited over white, 1-bit, LAB.
* **Errors.** Every Pillow failure (``UnidentifiedImageError``, ``OSError``, ``SyntaxError``,
  ``ValueError``, ``EOFError``, ``struct.error``, ``DecompressionBombError``, ``MemoryError`` …) becomes
  an :class:`ImageError` whose message is one line fit for a report ("truncated JPEG (file ends early)").

Process-wide Pillow state is left alone: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set, and
``Image.MAX_IMAGE_PIXELS`` is only touched on the rare path described at :func:`_pillow_pixel_limit`.
"""

from __future__ import annotations

import errno
import functools
import io
import math
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, features

from glimpse.errors import ImageError, ImageTooLargeError, UserInputError
from glimpse.raw import RAW_EXTENSIONS, decode_raw, is_raw_name

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_BYTES_PER_PIXEL",
    "METADATA_SLACK_BYTES",
    "SNIFF_BYTES",
    "DecodedImage",
    "ImageSource",
    "check_content",
    "check_file_size",
    "decode_image",
    "is_candidate",
    "max_file_bytes",
    "not_regular_reason",
    "open_image",
    "open_regular_file",
    "sniff_format",
]

DEFAULT_MAX_MEGAPIXELS: float = 100.0
"""Images with more pixels than this (in millions) are refused unread; 100 MP covers 108 MP phones at 1×."""

MAX_BYTES_PER_PIXEL: int = 8
"""The widest common storage of a pixel: 16-bit RGBA, uncompressed (TIFF, PNG, PPM can hold it raw)."""

METADATA_SLACK_BYTES: int = 64 * 2**20
"""Room for what an image file holds besides its pixels: EXIF/XMP, ICC profiles, embedded previews."""

SNIFF_BYTES: int = 512
"""How many leading bytes :func:`sniff_format` looks at (SVG needs a few hundred; binary magics need 32)."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif",
        ".png", ".apng",
        ".webp",
        ".gif",
        ".bmp", ".dib",
        ".tif", ".tiff",
        ".ppm", ".pgm", ".pbm", ".pnm",
        ".heic", ".heif", ".avif",
        ".jp2", ".j2k", ".jpf", ".jpx",
        ".ico", ".tga", ".qoi", ".psd",
        # Listed although never decoded, so that such files are reported with a reason, not skipped.
        ".svg",
    }
)
"""Lower-case extensions (with the dot) that make a file an indexing candidate whatever its content."""

_WHITE = (255, 255, 255)

# EXIF orientation → the transpose that shows the image upright (the table of ImageOps.exif_transpose).
# We read the tag ourselves because the reported size needs it anyway, and we skip exif_transpose's
# rewrite of the metadata, which the RGB copy does not keep.
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})

# ISO-BMFF ("ftyp" box) brands. AVIF is checked first: AVIF files also list the generic 'mif1'.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1",
                          b"msf1"})
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_PNM = re.compile(rb"P[1-6]\s+(?:#[^\n]*\n\s*)*\d")

# Common things that end up with an image name: say what they are instead of "unrecognised".
_NOT_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x1aE\xdf\xa3", "a video (Matroska/WebM)"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)

_MISSING_HEIC = "HEIC needs the optional extra: pip install 'glimpse[heic]'"
_MISSING_AVIF = "AVIF needs a Pillow built with AVIF support (Pillow ≥ 11.3 wheels have it): pip install -U pillow"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image ready for preprocessing.

    ``image`` is mode ``"RGB"`` (8 bits per channel, i.e. ``uint8[h, w, 3]`` through ``np.asarray``),
    upright, possibly smaller than the original when JPEG draft decoding was used (its shorter side is
    then still ≥ the ``min_side`` asked for). ``width``/``height`` are the original full-resolution
    size as displayed (EXIF rotation applied). ``format`` is Pillow's format name (``"JPEG"``,
    ``"PNG"``, ``"PPM"`` for all PNM flavours, ...).
    """

    image: Image.Image
    width: int
    height: int
    format: str
    exif: Image.Exif | None = None  # the file's EXIF (capture metadata: ``glimpse.metadata``), None without one


# --------------------------------------------------------------------------------------------------
# Recognition


def sniff_format(head: bytes) -> str | None:
    """Recognise an image format from the first bytes of a file (pass at least ``SNIFF_BYTES``).

    Returns Pillow's format name: ``"JPEG" "PNG" "GIF" "WEBP" "BMP" "TIFF" "PPM"`` (PBM/PGM/PPM/PNM)
    ``"JPEG2000" "HEIF" "AVIF"``, or ``"SVG"`` for SVG text (recognised so it can be refused with a clear
    reason); ``None`` for anything else.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    # "BM" alone is too weak (text can start with it): also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    if _PNM.match(head):
        return "PPM"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG2000"
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
        return None
    if _looks_like_svg(head):
        return "SVG"
    return None


def is_candidate(path: str | os.PathLike[str] | bytes | os.PathLike[bytes], head: bytes | None = None) -> bool:
    """Whether a file should be handed to the decoder when indexing.

    True when the extension is in ``IMAGE_EXTENSIONS`` (even if the content then fails: a text file named
    ``photo.jpg`` is reported with its reason rather than silently ignored) or when the content sniffs as
    an image (a JPEG named ``photo.dat``). ``head`` is the file's first bytes if already read; otherwise
    up to ``SNIFF_BYTES`` are read here. An unreadable file without an image extension is not a candidate.
    """
    ext = os.path.splitext(os.fsdecode(path))[1].lower()
    if ext in IMAGE_EXTENSIONS or ext in RAW_EXTENSIONS:
        return True
    if head is None:
        try:
            with open_regular_file(path) as fh:
                head = fh.read(SNIFF_BYTES)
        except (ImageError, OSError):
            return False
    return sniff_format(head) is not None


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF ``ftyp`` box (as far as ``head`` reaches)."""
    size = int.from_bytes(head[:4], "big")
    end = min(max(size, 16), len(head))
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def _strip_text_prefix(head: bytes) -> bytes:
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def _looks_like_svg(head: bytes) -> bool:
    text = _strip_text_prefix(head)[:SNIFF_BYTES].lower()
    if text.startswith(b"<svg"):
        return True
    return text.startswith((b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in text


def _looks_like_text(head: bytes) -> bool:
    """Heuristic: no NUL byte and (almost) no control characters other than whitespace."""
    if not head or b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 0x20 and b not in (0x09, 0x0A, 0x0C, 0x0D)) + head.count(0x7F)
    return controls <= len(head) // 50


def _not_an_image_reason(head: bytes) -> str:
    """One-line reason for content that no decoder recognised."""
    for magic, what in _NOT_IMAGE_MAGIC:
        if head.startswith(magic):
            return f"not an image: looks like {what}"
    if head[4:8] == b"ftyp":
        return "not an image: looks like a video (MP4/QuickTime)"
    if head[:4] == b"RIFF":
        kind = head[8:12].decode("ascii", "replace").strip()
        return f"not an image: looks like a RIFF {kind} file (audio/video)"
    if _looks_like_text(head):
        text = _strip_text_prefix(head).lower()
        if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
            return "not an image: looks like an HTML page (a failed download?)"
        return "not an image: looks like text"
    return f"not an image: unrecognised content (starts with {head[:8].hex(' ')})"


# --------------------------------------------------------------------------------------------------
# Optional decoders


_heif_lock = threading.Lock()
_heif_registered: bool | None = None


def _heif_ready() -> bool:
    """Register pillow-heif's opener once (thread-safe); False when the extra is not installed."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered is None:
            try:
                import pillow_heif  # optional extra: imported only when a HEIC shows up
            except ImportError:
                _heif_registered = False
            else:
                pillow_heif.register_heif_opener()
                _heif_registered = True
        return _heif_registered


@functools.cache
def _avif_ready() -> bool:
    """Pillow ≥ 11.3 decodes AVIF itself; older pillow-heif releases (< 1.0) also did."""
    if features.check("avif"):
        return True
    if not _heif_ready():
        return False
    import pillow_heif

    register = getattr(pillow_heif, "register_avif_opener", None)
    if register is None:
        return False
    register()
    return True


def _refuse_unsupported(fmt: str | None) -> None:
    if fmt == "SVG":
        raise ImageError("SVG vector images are not supported; convert to PNG")
    if fmt == "HEIF" and not _heif_ready():
        raise ImageError(_MISSING_HEIC)
    if fmt == "AVIF" and not _avif_ready():
        raise ImageError(_MISSING_AVIF)


# --------------------------------------------------------------------------------------------------
# Decoding


class _PillowRefused(Exception):
    """Internal: Pillow's own process-wide bomb guard refused an image that our limit may allow."""


_pillow_limit_lock = threading.Lock()


@contextmanager
def _pillow_pixel_limit(pixels: int | None) -> Iterator[None]:
    """Set Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` for the duration of the block.

    Pillow checks its own limit (~89 MP warning, ~179 MP error) inside ``Image.open``, before we can
    check ours, and a global cannot be changed per thread. So the normal path leaves it alone, and only
    when Pillow refuses an image do we retry under this lock: the header is parsed with Pillow's limit
    lifted (``None``, no pixels are read) so that our own check can report the exact size, and an image
    within our limit is then decoded with Pillow's limit set to ours. The value is restored on exit; the
    lock keeps two retries from restoring each other's values. Glimpse's other threads do not rely on
    Pillow's value (each checks its own limit right after ``Image.open``); foreign code in the process
    sees the lifted value only for the microseconds of one header parse.
    """
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _max_pixels(max_megapixels: float) -> int | None:
    if isinstance(max_megapixels, bool) or not isinstance(max_megapixels, int | float) or math.isnan(
        max_megapixels
    ) or max_megapixels <= 0:
        raise UserInputError(f"max_megapixels must be a positive number of megapixels, got {max_megapixels!r}")
    if math.isinf(max_megapixels):
        return None
    return int(max_megapixels * 1_000_000)


def check_max_megapixels(max_megapixels: float) -> int | None:
    """Validate a ``--max-megapixels`` value up front (``UserInputError`` if it is not a positive number);
    returns the pixel limit, None for no limit (``math.inf``)."""
    return _max_pixels(max_megapixels)


def _megapixels(pixels: float) -> str:
    mp = pixels / 1_000_000
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.1f}"


def _too_large(width: int, height: int, max_megapixels: float) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"image is {width}×{height} = {_megapixels(width * height)} MP, above the {max_megapixels:g} MP limit "
        "(raise --max-megapixels)"
    )


def _too_large_from_pillow(exc: BaseException, max_megapixels: float) -> ImageTooLargeError:
    """Pillow refused while decoding (e.g. a GIF frame larger than its header said): no sizes, just pixels."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{_megapixels(int(found.group(1)))} MP" if found else "too many pixels"
    return ImageTooLargeError(
        f"image grows to {size} while decoding, above the {max_megapixels:g} MP limit (raise --max-megapixels)"
    )


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_failure(exc: Exception, fmt: str | None, head: bytes) -> ImageError:
    """Turn any decoder exception into an ImageError with a one-line reason."""
    name = fmt or "image"
    if isinstance(exc, MemoryError):
        return ImageError(f"out of memory while decoding this {name}")
    if isinstance(exc, Image.UnidentifiedImageError):
        if fmt is None:
            return ImageError(_not_an_image_reason(head))
        return ImageError(f"corrupt {name}: the header cannot be parsed (damaged or cut short)")
    message = str(exc)
    lowered = message.lower()
    if isinstance(exc, EOFError) or "truncated" in lowered or "premature end" in lowered:
        return ImageError(f"truncated {name} (file ends early)")
    if "broken data stream" in lowered:
        return ImageError(f"corrupt {name} data (broken data stream)")
    if "could not create decoder object" in lowered:
        return ImageError(f"corrupt or truncated {name} (the decoder refused the data)")
    detail = _one_line(message) or type(exc).__name__
    return ImageError(f"corrupt {name}: {detail}")


ImageSource = bytes | bytearray | memoryview | BinaryIO
"""An encoded image: its bytes, or a seekable binary file (read from its start, left open)."""


def _as_file(source: ImageSource) -> BinaryIO:
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)  # shares a bytes object's buffer: no copy
    return source


def _source_size(fh: BinaryIO) -> int:
    return fh.seek(0, os.SEEK_END)


def _read_head(fh: BinaryIO) -> bytes:
    fh.seek(0)
    head = fh.read(SNIFF_BYTES)
    fh.seek(0)
    return head


def decode_image(
    source: ImageSource,
    *,
    min_side: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> DecodedImage:
    """Decode an encoded image (the file's bytes, or the seekable binary file itself) into an upright RGB image.

    From a file object Pillow reads only what it needs (the header first, then the pixel data in blocks):
    pass :func:`open_regular_file`'s file rather than its bytes. ``min_side``: the smallest shorter side
    the caller needs (``Preprocess.min_side``). JPEGs are then decoded at the smallest DCT scale (1/8, 1/4,
    1/2) whose shorter side stays ≥ ``min_side``; None decodes at full size. ``max_megapixels``: refuse
    images whose header declares more pixels than this (``math.inf`` for no limit) with
    :class:`ImageTooLargeError`, before decoding any pixel; so is a source larger than
    :func:`max_file_bytes`.

    Raises :class:`ImageError` (one-line reason) for anything that cannot be decoded, and
    :class:`UserInputError` for a bad ``min_side``/``max_megapixels``.
    """
    max_pixels = _max_pixels(max_megapixels)
    if min_side is not None and (isinstance(min_side, bool) or not isinstance(min_side, int) or min_side < 1):
        raise UserInputError(f"min_side must be a positive integer or None, got {min_side!r}")
    fh = _as_file(source)
    check_file_size(_source_size(fh), max_megapixels)
    name = getattr(fh, "name", None)
    if is_raw_name(name):
        image, width, height, exif, _ = decode_raw(
            fh, min_side=min_side, max_pixels=max_pixels,
            too_large=lambda w, h: _too_large(w, h, max_megapixels))
        return DecodedImage(image, width, height, os.path.splitext(os.fsdecode(name))[1][1:].upper(), exif)
    head = _read_head(fh)
    fmt = _check_head(head)
    try:
        return _decode(fh, head, fmt, min_side, max_pixels, max_megapixels, retry=False)
    except _PillowRefused:
        fh.seek(0)
        return _decode(fh, head, fmt, min_side, max_pixels, max_megapixels, retry=True)


def _check_head(head: bytes) -> str | None:
    """The sniffed format of a file's first bytes; ImageError for an empty file or an unsupported format."""
    if not head:
        raise ImageError("empty file")
    fmt = sniff_format(head)
    _refuse_unsupported(fmt)
    return fmt


def check_content(fh: BinaryIO) -> None:
    """Refuse a file that is no image, reading only its header (the rest of a 1 GB text file stays unread).

    Raises :class:`ImageError` with the reason :func:`decode_image` would give ("empty file", "not an
    image: looks like text", "SVG vector images are not supported ...") when the first bytes, or Pillow's
    header parser for the formats without a magic number (TGA, ICO ...), recognise no decodable image.
    Returns quietly when the file may decode; ``fh`` is left at its start.
    """
    if is_raw_name(getattr(fh, "name", None)):
        return  # a RAW is recognised by its name; LibRaw reads its header when decoding
    head = _read_head(fh)
    if _check_head(head) is not None:
        return
    try:
        with _pillow_pixel_limit(None):  # identification only: a bomb is an image (decode refuses it)
            Image.open(fh).close()
    except Image.UnidentifiedImageError as exc:
        raise ImageError(_not_an_image_reason(head)) from exc
    except Exception:  # recognised but damaged: decode_image reports it with its reason
        pass
    finally:
        fh.seek(0)


def _decode(
    fh: BinaryIO,
    head: bytes,
    fmt: str | None,
    min_side: int | None,
    max_pixels: int | None,
    max_megapixels: float,
    *,
    retry: bool,
) -> DecodedImage:
    try:
        with _pillow_pixel_limit(None) if retry else nullcontext():
            im = Image.open(fh)
        with im:
            fmt = "JPEG" if im.format == "MPO" else (im.format or fmt)  # MPO: a JPEG with extra frames
            width, height = im.size
            # The bomb guard: the header's size, before load() allocates anything.
            if max_pixels is not None and width * height > max_pixels:
                raise _too_large(width, height, max_megapixels)
            if min_side is not None and fmt == "JPEG":
                scale = _draft_scale(width, height, min_side)
                if scale > 1:
                    # draft() takes a target size and picks the largest scale s in {8, 4, 2, 1} with
                    # s ≤ min(w // target_w, h // target_h); (w // scale, h // scale) makes that ours.
                    im.draft("RGB", (max(1, width // scale), max(1, height // scale)))
            with _pillow_pixel_limit(max_pixels) if retry else nullcontext():
                im.load()
            # After load(): PNG keeps its eXIf chunk after the pixels, so reading it earlier would decode.
            exif = _exif(im)
            orientation = _orientation(exif)
            rgb = _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning arrives as an exception only when warnings are errors (python -W error).
        if not retry:
            raise _PillowRefused from exc
        raise _too_large_from_pillow(exc, max_megapixels) from exc
    except Exception as exc:  # every decoder failure, whatever its type, is a bad file, not a crash
        raise _decode_failure(exc, fmt, head) from exc
    if orientation in _ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return DecodedImage(image=rgb, width=width, height=height, format=fmt or "unknown", exif=exif)


def _draft_scale(width: int, height: int, min_side: int) -> int:
    """The largest JPEG DCT scale-down (8, 4, 2 or 1) whose shorter side, rounded up as libjpeg does,
    is still ≥ ``min_side``."""
    shorter = min(width, height)
    return next((s for s in (8, 4, 2) if -(-shorter // s) >= min_side), 1)


def _exif(im: Image.Image) -> Image.Exif | None:
    """The image's EXIF (Pillow also reads the orientation from XMP into it); None when absent or unreadable."""
    try:
        exif = im.getexif()
        for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            exif.get_ifd(ifd)  # read now, while the file is open (Pillow caches them; TIFFs read them lazily)
    except Exception:  # a broken EXIF block must not cost the image
        return None
    return exif if len(exif) else None


def _orientation(exif: Image.Exif | None) -> int:
    """EXIF orientation 1–8; 1 when absent or unreadable (the image is then shown as stored)."""
    try:
        value = exif.get(ExifTags.Base.Orientation, 1) if exif is not None else 1
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → ``"RGB"`` uint8. Alpha is composited over white (black would turn transparent
    logos and line art into black squares), high bit depths are scaled rather than clipped."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I") or mode == "F":
        return _scale_to_l(im).convert("RGB")
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", im.size, _WHITE)
        out.paste(rgba, mask=rgba)  # blends by the alpha band: out = rgb·a + white·(1 − a)
        return out
    # CMYK (Pillow already undoes the Adobe inversion when reading JPEGs), L, 1, P, YCbCr, LAB, RGBX...
    return im.convert("RGB")


def _scale_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale → 8-bit ``"L"``.

    Pillow's own ``convert("L")`` clips (every 16-bit value above 255 becomes white), so we scale:
    ``I;16*`` by its nominal range 0–65535; ``I`` (int32) by the nominal range its values fit
    (0–255, 0–65535) or else its min–max; ``F`` as 0–1 or 0–255 when it fits, else min–max.
    """
    values = np.asarray(im)
    if im.mode == "F":
        values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (values.min().item(), values.max().item()) if values.size else (0, 0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        # Round-to-nearest 65535 → 255 in integers: v·255/65535 = v/257.
        out = (values.astype(np.uint32) * 255 + 32767) // 65535
    elif lo >= 0 and hi <= (1.0 if im.mode == "F" else 255):
        out = np.rint(values * 255.0) if im.mode == "F" else values
    elif im.mode == "F" and lo >= 0 and hi <= 255:
        out = np.rint(values)
    elif hi > lo:
        out = np.rint((values.astype(np.float64) - lo) * (255.0 / (hi - lo)))
    else:
        out = np.zeros_like(values)
    return Image.fromarray(np.ascontiguousarray(out, dtype=np.uint8))


# --------------------------------------------------------------------------------------------------
# Files


def _os_reason(exc: OSError) -> str:
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "no such file (or a dangling symlink)",
        errno.EISDIR: "is a directory",
        errno.ELOOP: "symlink loop (too many levels of symbolic links)",
        errno.ENAMETOOLONG: "file name too long",
        errno.EIO: "input/output error (failing disk or network share?)",
    }
    reason = reasons.get(exc.errno or 0) or (exc.strerror or str(exc) or type(exc).__name__).lower()
    return "cannot read file: " + _one_line(reason)


_SPECIAL_FILES: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def not_regular_reason(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read ("cannot read file: not a regular file (FIFO)"); None when
    it is a regular file. Reading a FIFO or a device would block or never end."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "cannot read file: is a directory"
    kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "special file")
    return f"cannot read file: not a regular file ({kind})"


def open_regular_file(path: str | os.PathLike[str] | bytes | os.PathLike[bytes]) -> BinaryIO:
    """Open a file for reading, only if it is a regular file, without ever blocking: the one door.

    ``O_NONBLOCK`` makes opening a FIFO return at once (a plain ``open`` waits for a writer forever) and
    the ``fstat`` of the opened descriptor, not of the path, refuses what it turned out to be, so a file
    swapped for a FIFO between a scan and this call is refused too. Returns a buffered, seekable binary
    file the caller closes. Raises :class:`ImageError` with a one-line reason ("cannot read file:
    permission denied", "cannot read file: not a regular file (FIFO)").
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from exc
    try:
        reason = not_regular_reason(os.fstat(fd).st_mode)
    except OSError as exc:
        os.close(fd)
        raise ImageError(_os_reason(exc)) from exc
    if reason is not None:
        os.close(fd)
        raise ImageError(reason)
    fh = open(fd, "rb", closefd=True)  # noqa: SIM115 - returned to the caller, who closes it
    # Named by its path, as open(path) would be: decoders that go by the name (camera RAWs) see it.
    fh.raw.name = os.fspath(path)
    return fh


def max_file_bytes(max_megapixels: float) -> int | None:
    """The largest file :func:`decode_image` reads: ``max_megapixels`` × ``MAX_BYTES_PER_PIXEL`` +
    ``METADATA_SLACK_BYTES`` (867 MB at the default 100 MP), None without a pixel limit.

    An image within the pixel limit cannot need more bytes than its pixels stored raw at 16-bit RGBA plus
    generous metadata, so a larger file is not one image we would decode (a disk image, a video, a
    multi-gigabyte archive named ``.jpg``): refusing it unread saves hashing and parsing gigabytes.
    """
    max_pixels = _max_pixels(max_megapixels)
    return None if max_pixels is None else max_pixels * MAX_BYTES_PER_PIXEL + METADATA_SLACK_BYTES


def _bytes_text(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_file_size(size: int, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> None:
    """Raise :class:`ImageTooLargeError` when a file of ``size`` bytes is above :func:`max_file_bytes`."""
    limit = max_file_bytes(max_megapixels)
    if limit is not None and size > limit:
        raise ImageTooLargeError(
            f"file is {_bytes_text(size)}, more than an image within the {max_megapixels:g} MP limit can take "
            f"({_bytes_text(limit)}); raise --max-megapixels if it really is one image"
        )


def open_image(
    path: str | os.PathLike[str] | bytes | os.PathLike[bytes],
    *,
    min_side: int | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> DecodedImage:
    """Open a file with :func:`open_regular_file` and :func:`decode_image` it from the file (same arguments,
    same errors; the file is read as the decoder needs it, never copied whole into memory)."""
    with open_regular_file(path) as fh:
        try:
            return decode_image(fh, min_side=min_side, max_megapixels=max_megapixels)
        except OSError as exc:  # a read failing under the decoder (EIO on a dying disk)
            raise ImageError(_os_reason(exc)) from exc
