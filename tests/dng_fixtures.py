"""Tiny DNG files written byte by byte (TIFF 6 + DNG 1.4 tags), which LibRaw reads like a camera's.

The raw image is an RGGB Bayer mosaic of a given RGB picture (16-bit, linear), with a colour matrix that makes
the camera space sRGB's, so a demosaic gives back roughly the picture; optionally IFD0 is a JPEG preview and
the raw data sits in a SubIFD, as cameras and Adobe's converter write them. EXIF: DateTimeOriginal, Make, Model.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

BYTE, ASCII, SHORT, LONG, RATIONAL, SRATIONAL = 1, 2, 3, 4, 5, 10
_SIZE = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8}
# XYZ (D65) -> linear sRGB, as DNG's ColorMatrix1 (XYZ -> camera): the camera "is" sRGB.
_XYZ_TO_SRGB = (32406, -15372, -4986, -9689, 18758, 415, 557, -2040, 10570)


def _pack(typ: int, values: object) -> bytes:
    if typ == ASCII:
        return str(values).encode() + b"\0"
    if typ == BYTE:
        return bytes(values)  # type: ignore[arg-type]
    if typ == SHORT:
        return struct.pack(f"<{len(values)}H", *values)  # type: ignore[arg-type]
    if typ == LONG:
        return struct.pack(f"<{len(values)}I", *values)  # type: ignore[arg-type]
    fmt = "<ii" if typ == SRATIONAL else "<II"
    return b"".join(struct.pack(fmt, n, d) for n, d in values)  # type: ignore[union-attr]


class _Tiff:
    def __init__(self) -> None:
        self.buf = bytearray(b"II*\0\0\0\0\0")

    def blob(self, data: bytes) -> int:
        if len(self.buf) % 2:
            self.buf += b"\0"
        offset = len(self.buf)
        self.buf += data
        return offset

    def ifd(self, entries: list[tuple[int, int, object]]) -> int:
        fields = []
        for tag, typ, values in sorted(entries, key=lambda e: e[0]):
            data = _pack(typ, values)
            value = data.ljust(4, b"\0") if len(data) <= 4 else struct.pack("<I", self.blob(data))
            fields.append(struct.pack("<HHI", tag, typ, len(data) // _SIZE[typ]) + value)
        if len(self.buf) % 2:
            self.buf += b"\0"
        offset = len(self.buf)
        self.buf += struct.pack("<H", len(fields)) + b"".join(fields) + struct.pack("<I", 0)
        return offset


def bayer(rgb: np.ndarray, *, linear: bool = False) -> np.ndarray:
    """uint16[h, w] RGGB mosaic of uint8[h, w, 3] (``linear``: undo the sRGB curve first, as a sensor sees light,
    so that LibRaw's output gamma gives back about the same picture)."""
    if linear:
        c = rgb.astype(np.float32) / 255.0
        c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        a = np.rint(c * 65535.0).astype(np.uint16)
    else:
        a = rgb.astype(np.uint16) * 257
    out = np.empty(rgb.shape[:2], np.uint16)
    out[0::2, 0::2] = a[0::2, 0::2, 0]
    out[0::2, 1::2] = a[0::2, 1::2, 1]
    out[1::2, 0::2] = a[1::2, 0::2, 1]
    out[1::2, 1::2] = a[1::2, 1::2, 2]
    return out


def write_dng(path: Path, rgb: np.ndarray, *, preview: np.ndarray | None = None,
              taken: str = "2022:07:14 09:30:00", make: str = "Glimpse", model: str = "Test Cam",
              linear: bool = False) -> Path:
    """Write ``rgb`` (uint8[h, w, 3], even sides) as a DNG; ``preview`` (uint8[ph, pw, 3]) as its JPEG preview."""
    h, w, _ = rgb.shape
    tiff = _Tiff()
    raw_offset = tiff.blob(bayer(rgb, linear=linear).tobytes())
    exif_offset = tiff.ifd([(36867, ASCII, taken)])
    camera = [
        (50706, BYTE, [1, 4, 0, 0]), (50707, BYTE, [1, 1, 0, 0]), (50708, ASCII, f"{make} {model}"),
        (271, ASCII, make), (272, ASCII, model), (274, SHORT, [1]), (34665, LONG, [exif_offset]),
        (50721, SRATIONAL, [(v, 10000) for v in _XYZ_TO_SRGB]), (50728, RATIONAL, [(1, 1)] * 3),
        (50778, SHORT, [21]),
    ]
    raw = [
        (256, LONG, [w]), (257, LONG, [h]), (258, SHORT, [16]), (259, SHORT, [1]), (262, SHORT, [32803]),
        (273, LONG, [raw_offset]), (277, SHORT, [1]), (278, LONG, [h]), (279, LONG, [w * h * 2]),
        (284, SHORT, [1]), (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]), (50714, LONG, [0]),
        (50717, LONG, [65535]),
    ]
    if preview is None:
        ifd0 = tiff.ifd([(254, LONG, [0]), *raw, *camera])
    else:
        jpeg = io.BytesIO()
        Image.fromarray(preview).save(jpeg, "JPEG", quality=95)
        jpeg_offset = tiff.blob(jpeg.getvalue())
        sub = tiff.ifd([(254, LONG, [0]), *raw])
        ph, pw, _ = preview.shape
        ifd0 = tiff.ifd([(254, LONG, [1]), (256, LONG, [pw]), (257, LONG, [ph]), (258, SHORT, [8, 8, 8]),
                         (259, SHORT, [7]), (262, SHORT, [6]), (273, LONG, [jpeg_offset]), (277, SHORT, [3]),
                         (278, LONG, [ph]), (279, LONG, [len(jpeg.getvalue())]), (284, SHORT, [1]),
                         (330, LONG, [sub]), *camera])
    tiff.buf[4:8] = struct.pack("<I", ifd0)
    path.write_bytes(bytes(tiff.buf))
    return path


def two_colour_picture(h: int, w: int) -> np.ndarray:
    """Red left half, blue right half (uint8[h, w, 3])."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (220, 30, 30)
    rgb[:, w // 2 :] = (30, 30, 220)
    return rgb
