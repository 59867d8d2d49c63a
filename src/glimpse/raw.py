"""Camera RAW files (``.dng .cr2 .cr3 .nef .arw .raf .orf .rw2`` …) through rawpy (LibRaw), the ``glimpse[raw]`` extra.

A RAW file is recognised by its name (its bytes are a TIFF, an ISO-BMFF box or a vendor header, and Pillow
would happily decode a TIFF-based RAW's 160-pixel thumbnail as if it were the photo). Decoding takes the
cheapest picture that serves the model:

1. the **embedded JPEG preview** the camera wrote, when its shorter side reaches the model's ``min_side``
   (decoded like any JPEG, DCT-scaled, then turned by the RAW's orientation) — many times faster than
2. a **half-size demosaic** (LibRaw's ``half_size``: one pixel per 2×2 Bayer cell, camera white balance, 8 bits),
   used when there is no preview or it is too small.

The EXIF (capture time, camera, GPS) comes from the file itself where it is TIFF-structured (DNG, NEF, CR2, ARW,
PEF, ORF, RW2, SRW …), else from the preview JPEG. Without rawpy, :class:`RawSupportMissingError` says once what to
install; the indexer reports such files as skipped with that reason, and retries them after the install.
"""

from __future__ import annotations

import functools
import io
import os
from typing import Any, BinaryIO

from PIL import Image

from glimpse.errors import ImageError

RAW_EXTENSIONS: frozenset[str] = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl",
    ".pef", ".srw", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mos", ".x3f",
})
"""Lower-case extensions (with the dot) of the camera RAW formats LibRaw reads."""

INSTALL_HINT = "camera RAW files need the optional extra: pip install 'glimpse[raw]'"

# TIFF-structured RAWs whose first bytes are not the TIFF magic: the same IFD layout behind a vendor magic.
_VENDOR_TIFF_MAGIC = (b"IIRO", b"IIRS", b"IIU\x00", b"MMOR")
# LibRaw's ``flip`` → the transpose that shows the picture upright (0: as stored).
_FLIP_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


class RawSupportMissingError(ImageError):
    """A RAW file was met but rawpy is not installed (reported once per run, retried after installing)."""


def is_raw_name(name: str | os.PathLike[str] | bytes | None) -> bool:
    """Whether a file name has a camera RAW extension."""
    if name is None or isinstance(name, int):
        return False
    return os.path.splitext(os.fsdecode(name))[1].lower() in RAW_EXTENSIONS


@functools.cache
def raw_support() -> bool:
    """Whether rawpy imports here (checked once per process)."""
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


def decode_raw(fh: BinaryIO, *, min_side: int | None, max_pixels: int | None,
               too_large: Any) -> tuple[Image.Image, int, int, Image.Exif | None, str]:
    """``(rgb, width, height, exif, how)`` of a RAW file: an upright ``"RGB"`` picture, the full sensor picture's
    size as displayed, its EXIF, and ``how`` it was made (``"preview"`` or ``"demosaic"``).

    ``too_large(width, height)`` builds the error raised when the sensor has more than ``max_pixels`` pixels
    (checked from the header, before any demosaic). Raises ImageError (one line) for what LibRaw cannot read.
    """
    if not raw_support():
        raise RawSupportMissingError(INSTALL_HINT)
    import rawpy

    fh.seek(0)
    data = fh.read()
    try:
        raw = rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawError, ValueError, OSError) as exc:
        raise ImageError(f"cannot read RAW file: {_libraw_reason(exc)}") from exc
    with raw:
        sizes = raw.sizes
        flip = sizes.flip
        width, height = (sizes.height, sizes.width) if flip in (5, 6) else (sizes.width, sizes.height)
        if max_pixels is not None and width * height > max_pixels:
            raise too_large(width, height)
        preview = _preview(raw, min_side)
        if preview is not None:
            picture, preview_exif = preview
            if flip in _FLIP_TRANSPOSE:
                picture = picture.transpose(_FLIP_TRANSPOSE[flip])
            how = "preview"
        else:
            preview_exif = None
            try:
                pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, no_auto_bright=False)
            except (rawpy.LibRawError, ValueError, MemoryError) as exc:
                raise ImageError(f"cannot demosaic RAW file: {_libraw_reason(exc)}") from exc
            picture, how = Image.fromarray(pixels, "RGB"), "demosaic"  # postprocess applies the flip itself
    return picture, width, height, tiff_exif(data) or preview_exif, how


def _preview(raw: Any, min_side: int | None) -> tuple[Image.Image, Image.Exif | None] | None:
    """The embedded preview as RGB (+ its EXIF), when there is one whose shorter side reaches ``min_side``."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, ValueError):  # no preview, or one LibRaw cannot unpack
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            im = Image.open(io.BytesIO(thumb.data))
            if min_side is not None and min(im.size) < min_side:
                return None
            if min_side is not None:
                scale = next((s for s in (8, 4, 2) if -(-min(im.size) // s) >= min_side), 1)
                if scale > 1:
                    im.draft("RGB", (max(1, im.size[0] // scale), max(1, im.size[1] // scale)))
            exif = im.getexif()
            return im.convert("RGB"), exif if len(exif) else None
        picture = Image.fromarray(thumb.data).convert("RGB")  # a bitmap preview (uint8[h, w, 3])
    except Exception:  # a damaged preview is no reason to lose the photo: demosaic instead
        return None
    if min_side is not None and min(picture.size) < min_side:
        return None
    return picture, None


def tiff_exif(data: bytes) -> Image.Exif | None:
    """The EXIF of a TIFF-structured RAW (IFD0 with its Exif and GPS sub-IFDs), or None."""
    head = data[:4]
    if head in _VENDOR_TIFF_MAGIC:
        data = (b"II*\x00" if head.startswith(b"II") else b"MM\x00*") + data[4:]
    elif head not in (b"II*\x00", b"MM\x00*"):
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception:
        return None
    return exif if len(exif) else None


def _libraw_reason(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith("b'") and text.endswith("'"):
        text = text[2:-1]
    return (text or type(exc).__name__).rstrip(".").lower()
