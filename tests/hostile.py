"""A hostile image folder, generated with Pillow: what a real photo collection throws at an indexer.

``make_hostile_corpus(root)`` writes the files below under ``root`` and returns a :class:`HostileCorpus`
that says, for each, whether it must decode (``good``) or fail with an ``ImageError`` whose message
contains ``reason``. It is used by ``test_images.py`` (file by file through ``open_image``) and by the
indexing tests (a whole ``glimpse index`` run must index exactly ``corpus.good_paths``, report every
other candidate with its reason, ignore the non-candidates, and not hang or crash). Keep keys, names
and expectations stable: other tests rely on them. Every good file has different pixels (and bytes),
so no two of them look like duplicates or like one file moved.

Good (decode to RGB; pixel facts that tests check are noted):

================  =========================  ====================================================
key               name                       content
================  =========================  ====================================================
jpeg              normal.jpg                 64×48 RGB photo
cmyk_jpeg         cmyk.jpg                   48×32 CMYK (Adobe, inverted), left half pure red
                                             (C0 M100 Y100 K0), right half white
png16             gray16.png                 64×16 16-bit greyscale ramp 0 → 65535 left to right
palette_png       palette_alpha.png          32×32 P: left half transparent index, right half red
animated_gif      animated.gif               3 frames 32×32: red, green, blue (first frame red)
exif_rotated      rotated.jpg                stored 60×30 (left half red, right half blue) with EXIF
                                             orientation 6: displays 30×60, red on top
la_png            la.png                     32×32 LA: left half transparent, right half opaque black
onebit_png        onebit.png                 32×32 mode 1: left half black, right half white
onebit_pbm        onebit.pbm                 32×32 PBM: top half black, bottom half white
webp              image.webp                 48×32 photo (lossless)
bmp               image.bmp                  48×32 photo
tiff              image.tiff                 48×32 photo
jpeg_named_png    really_a_jpeg.png          JPEG bytes under a .png name (decoded by content)
jpeg_named_dat    photo.dat                  JPEG bytes, no image extension (a candidate by content)
nested_jpeg       sub/nested.jpg             a JPEG one folder down
non_utf8_name     b"caf\\xe9.jpg"             a JPEG whose name is not valid UTF-8 (Latin-1 é)
avif              image.avif                 32×32 AVIF, only when this Pillow can write AVIF
line_png          line.png                   10000×1 PNG (114 bytes): resized whole for a 224 crop it
                                             was a 2,240,000×224 image (5 GB); left red, right blue
================  =========================  ====================================================

Bad (``ImageError``; ``reason`` is a substring of its message):

================  =========================  ====================================================
empty             empty.jpg                  zero bytes                      → "empty file"
truncated_jpeg    truncated.jpg              first half of a JPEG            → "truncated JPEG"
bomb_png          bomb.png                   valid PNG header claiming 30000×30000, no pixel data
                                                                             → "30000×30000"
svg               vector.svg                 SVG text                        → "SVG"
text_as_jpg       photo.jpg                  plain text                      → "not an image: looks like text"
html_as_jpg       download.jpg               an HTML error page              → "HTML page"
noise_jpg         noise.jpg                  4 KiB of random bytes           → "not an image"
heic_stub         image.heic                 an ``ftyp heic`` box and nothing else
                                             → "glimpse[heic]" without pillow-heif, "HEIF" with it
self_symlink      selfloop.jpg               a symlink to itself             → "symlink loop"
directory_jpg     folder.jpg/                an (empty) directory            → "is a directory"
unreadable        unreadable.jpg             a valid JPEG, chmod 000         → "permission denied"
fifo_jpg          fifo.jpg                   a FIFO: a plain open() waits for a writer forever
                                                                             → "not a regular file (FIFO)"
device_link_jpg   zero.jpg -> /dev/zero      a symlink to a character device (endless zeros)
                                                                  → "not a regular file (character device)"
================  =========================  ====================================================

Neither (``candidate=False``: an indexer must ignore them silently):

================  =========================  ====================================================
readme            README.txt                 plain text with a non-image extension
dir_loop          sub/loop -> ..             a directory symlink to its parent: walking must stop
================  =========================  ====================================================

``regular=False`` marks entries that are not regular files (``selfloop.jpg``, ``folder.jpg/``,
``fifo.jpg``, ``zero.jpg``, ``sub/loop``): a scanner may report them with a reason (as ``open_image``
does) or pass over them, but must not index them, block, recurse forever or crash. Do not copy or read
the folder with tools that open every file (``shutil.copytree`` would wait on ``fifo.jpg`` forever).

Running as root: ``chmod 000`` does not stop a process with CAP_DAC_OVERRIDE from reading. The corpus
checks this at build time by trying to open ``unreadable.jpg``. When the open succeeds
(``corpus.privileged``), the file is honestly readable, so it is listed as *good* (it holds a valid
JPEG) instead of bad. ``folder.jpg/`` is the case that cannot be read by anyone, root included.

Files that the file system refuses to create (a non-UTF-8 name, symlinks on some file systems) are left
out and their keys listed in ``corpus.skipped``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, features

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


@dataclass(frozen=True)
class HostileFile:
    """One entry of the corpus.

    ``path`` is what ``os.scandir``/``os.walk`` yield for it under a ``str`` root (``os.fsdecode``, so
    the non-UTF-8 name carries a surrogate escape); ``raw`` is the same path as bytes.
    """

    key: str
    path: str
    raw: bytes
    good: bool
    reason: str | None = None
    candidate: bool = True
    regular: bool = True
    note: str = ""


@dataclass(frozen=True)
class HostileCorpus:
    """The generated folder: ``root`` and its entries by key (see the module docstring)."""

    root: Path
    files: dict[str, HostileFile]
    privileged: bool
    skipped: tuple[str, ...] = field(default=())

    def __getitem__(self, key: str) -> HostileFile:
        return self.files[key]

    def __contains__(self, key: object) -> bool:
        return key in self.files

    @property
    def good(self) -> list[HostileFile]:
        return [f for f in self.files.values() if f.good]

    @property
    def bad(self) -> list[HostileFile]:
        """Candidates that must fail with their ``reason``."""
        return [f for f in self.files.values() if f.candidate and not f.good]

    @property
    def ignored(self) -> list[HostileFile]:
        """Entries an indexer must not report at all."""
        return [f for f in self.files.values() if not f.candidate]

    @property
    def good_paths(self) -> frozenset[str]:
        """The expected indexed set, as ``str`` paths (what a scan of ``str(root)`` yields)."""
        return frozenset(f.path for f in self.good)


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """A smooth random RGB 'photo', distinct per seed (JPEG-friendly: no noise)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    return Image.fromarray(base, "RGB").resize(size, Image.Resampling.BICUBIC)


def halves(mode: str, size: tuple[int, int], left: object, right: object) -> Image.Image:
    """An image whose left half is ``left`` and right half ``right`` (colours in ``mode``)."""
    im = Image.new(mode, size, right)  # type: ignore[arg-type]
    im.paste(left, (0, 0, size[0] // 2, size[1]))  # type: ignore[arg-type]
    return im


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR (with a correct CRC) declares ``width``×``height`` 8-bit grey, with an empty
    IDAT and IEND: a decoder that trusts the header would allocate width·height bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _write(raw: bytes, data: bytes) -> None:
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with open(fd, "wb") as fh:
        fh.write(data)


def make_hostile_corpus(root: Path) -> HostileCorpus:
    """Write the hostile folder under ``root`` (created if needed) and describe it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    base = os.fsencode(root)
    files: dict[str, HostileFile] = {}
    skipped: list[str] = []

    def add(key: str, name: bytes | str, data: bytes | None, *, good: bool, reason: str | None = None,
            candidate: bool = True, regular: bool = True, note: str = "") -> bytes:
        raw = os.path.join(base, os.fsencode(name))
        if data is not None:
            _write(raw, data)
        files[key] = HostileFile(key, os.fsdecode(raw), raw, good, reason, candidate, regular, note)
        return raw

    # -- good ------------------------------------------------------------------------------------------
    add("jpeg", "normal.jpg", encode(picture(1, (64, 48)), "JPEG", quality=90), good=True)
    cmyk = halves("CMYK", (48, 32), (0, 255, 255, 0), (0, 0, 0, 0))
    add("cmyk_jpeg", "cmyk.jpg", encode(cmyk, "JPEG", quality=95), good=True,
        note="Pillow writes CMYK JPEGs with an Adobe APP14 marker and inverted samples, like Photoshop")
    ramp = np.round(np.linspace(0, 65535, 64)).astype(np.uint16)
    add("png16", "gray16.png", encode(Image.fromarray(np.tile(ramp, (16, 1))), "PNG"), good=True)
    pal = halves("P", (32, 32), 0, 1)
    pal.putpalette([0, 0, 0, *RED] + [0] * (256 - 2) * 3)
    add("palette_png", "palette_alpha.png", encode(pal, "PNG", transparency=0), good=True,
        note="the transparent index is black in the palette: composited over black it would stay black")
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]
    add("animated_gif", "animated.gif",
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0), good=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    add("exif_rotated", "rotated.jpg", encode(halves("RGB", (60, 30), RED, BLUE), "JPEG", quality=95, exif=exif),
        good=True)
    add("la_png", "la.png", encode(halves("LA", (32, 32), (0, 0), (0, 255)), "PNG"), good=True)
    add("onebit_png", "onebit.png", encode(halves("1", (32, 32), 0, 1), "PNG"), good=True)
    pbm = Image.new("1", (32, 32), 1)
    pbm.paste(0, (0, 0, 32, 16))
    add("onebit_pbm", "onebit.pbm", encode(pbm, "PPM"), good=True)
    add("webp", "image.webp", encode(picture(2, (48, 32)), "WEBP", lossless=True), good=True)
    add("bmp", "image.bmp", encode(picture(3, (48, 32)), "BMP"), good=True)
    add("tiff", "image.tiff", encode(picture(4, (48, 32)), "TIFF"), good=True)
    add("jpeg_named_png", "really_a_jpeg.png", encode(picture(5, (48, 32)), "JPEG"), good=True)
    add("jpeg_named_dat", "photo.dat", encode(picture(6, (48, 32)), "JPEG"), good=True)
    add("nested_jpeg", "sub/nested.jpg", encode(picture(7, (48, 32)), "JPEG"), good=True)
    try:
        add("non_utf8_name", b"caf\xe9.jpg", encode(picture(8, (48, 32)), "JPEG"), good=True)
    except OSError:  # file systems that insist on UTF-8 names (EILSEQ)
        skipped.append("non_utf8_name")
    add("line_png", "line.png", encode(halves("RGB", (10000, 1), RED, BLUE), "PNG"), good=True)
    if features.check("avif"):
        add("avif", "image.avif", encode(picture(9, (32, 32)), "AVIF"), good=True)
    else:
        skipped.append("avif")

    # -- bad -------------------------------------------------------------------------------------------
    add("empty", "empty.jpg", b"", good=False, reason="empty file")
    whole = encode(picture(10, (96, 64)), "JPEG", quality=95)
    add("truncated_jpeg", "truncated.jpg", whole[: len(whole) // 2], good=False, reason="truncated JPEG")
    add("bomb_png", "bomb.png", png_header_only(30000, 30000), good=False, reason="30000×30000")
    svg = (b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
           b'height="10"><rect width="10" height="10" fill="red"/></svg>\n')
    add("svg", "vector.svg", svg, good=False, reason="SVG")
    add("text_as_jpg", "photo.jpg", b"Shopping list:\n- milk\n- eggs\nThis is not a photo.\n", good=False,
        reason="not an image: looks like text")
    html = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
            b"<body><h1>Not Found</h1></body></html>\n")
    add("html_as_jpg", "download.jpg", html, good=False, reason="HTML page")
    noise = np.random.default_rng(11).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    add("noise_jpg", "noise.jpg", noise, good=False, reason="not an image")
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    has_heif = importlib.util.find_spec("pillow_heif") is not None
    add("heic_stub", "image.heic", heic, good=False, reason="HEIF" if has_heif else "glimpse[heic]")
    try:
        os.symlink(b"selfloop.jpg", os.path.join(base, b"selfloop.jpg"))
        add("self_symlink", "selfloop.jpg", None, good=False, reason="symlink loop", regular=False)
    except OSError:
        skipped.append("self_symlink")
    try:
        os.mkfifo(os.path.join(base, b"fifo.jpg"))
        add("fifo_jpg", "fifo.jpg", None, good=False, reason="not a regular file (FIFO)", regular=False)
    except (OSError, AttributeError):  # no FIFOs on this file system (or platform)
        skipped.append("fifo_jpg")
    if os.path.exists("/dev/zero"):
        try:
            os.symlink(b"/dev/zero", os.path.join(base, b"zero.jpg"))
            add("device_link_jpg", "zero.jpg", None, good=False, reason="not a regular file (character device)",
                regular=False)
        except OSError:
            skipped.append("device_link_jpg")
    else:
        skipped.append("device_link_jpg")
    (root / "folder.jpg").mkdir(exist_ok=True)
    add("directory_jpg", "folder.jpg", None, good=False, reason="is a directory", regular=False)

    raw = add("unreadable", "unreadable.jpg", encode(picture(12, (48, 32)), "JPEG"), good=False,
              reason="permission denied")
    os.chmod(raw, 0)
    privileged = _readable(raw)
    if privileged:
        files["unreadable"] = HostileFile(
            "unreadable", os.fsdecode(raw), raw, good=True,
            note="chmod 000 but readable: this process has CAP_DAC_OVERRIDE (root), so it decodes",
        )

    # -- neither ---------------------------------------------------------------------------------------
    add("readme", "README.txt", b"Holiday photos 2024. Do not delete.\n", good=False, candidate=False)
    try:
        os.symlink(b"..", os.path.join(base, b"sub", b"loop"), target_is_directory=True)
        add("dir_loop", "sub/loop", None, good=False, candidate=False, regular=False,
            note="points at its parent directory")
    except OSError:
        skipped.append("dir_loop")

    return HostileCorpus(root=root, files=files, privileged=privileged, skipped=tuple(skipped))


def _readable(raw: bytes) -> bool:
    try:
        fd = os.open(raw, os.O_RDONLY)
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        os.close(fd)
    return True
