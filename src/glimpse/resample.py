"""Pillow's resize of an RGB image, computing only the crop of it that a model sees.

:func:`resize_crop` returns exactly ``np.asarray(image.resize(size, filter))[top:bottom, left:right]``. It uses
the C kernel ``glimpse._resample`` (``_resample.c``) when the package was built with it and the kernel
reproduces the installed Pillow, and Pillow itself otherwise: the same pixels either way.

Why a kernel: the resize is the largest CPU cost of indexing after the encoder (about 3 ms of a 640×426 photo's
5 ms here), and the references (transformers' PIL processors, open_clip) define their pixels by Pillow's
arithmetic, so a faster resampler must give the same bytes, not nearly the same. The kernel computes only the
pixels the center crop keeps and runs both passes over contiguous memory; ``benchmarks/resize_speed.py``
compares it with Pillow (docs/BENCHMARKS.md).

The kernel reads Pillow's own pixel memory where Pillow exports it (``Image.__arrow_c_array__``, Pillow ≥ 11.2,
images held in one block), else a packed copy; with ``normalise`` it also writes the model's float input directly.

Which pass runs first changed between Pillow releases (recent ones run the vertical pass first where the
height loses more than twice as many pixels as the width; older ones always go horizontal first), and the
order changes the rounding. :func:`kernel_order` finds out once per process, on a few tiny images, which order
the installed Pillow uses, and checks every filter's weights at the same time; if the kernel matches neither
order it is not used.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from PIL import Image

from glimpse.errors import GlimpseError

try:
    from glimpse import _resample
except ImportError:  # built without a C compiler: Pillow does the resizing
    _resample = None

PILLOW_FILTERS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
"""Interpolation names (``Preprocess.interpolation``) and their Pillow filters."""

# The kernel's filter ids (``_resample.c``'s FILTERS); nearest is not a convolution in Pillow, so it stays there.
_KERNEL_FILTERS: dict[str, int] = {"box": 0, "bilinear": 1, "hamming": 2, "bicubic": 3, "lanczos": 4}

PassOrder = Literal["horizontal", "by-shrink"]

KERNEL_MAX_PIXELS = 8_000_000
"""Largest source (width × height) the kernel takes from a packed copy; bigger images that Pillow cannot export
in place are resized by Pillow. The copy (``np.asarray``: 3 bytes per pixel, twice that while Pillow packs it)
would put a 100 MP PNG 600 MB above Pillow's own resize, and past about 10 MP it costs more time than the kernel
saves (12 MP: 87 vs 78 ms; 8 MP: 23 vs 44 ms; a drafted JPEG never gets near)."""

Source = np.ndarray | tuple[object, object]
"""What the kernel reads: packed ``uint8[H, W, 3]``, or an RGB image's ``__arrow_c_array__()`` capsules."""


def _vertical_first(order: PassOrder, width: int, height: int, out_w: int, out_h: int) -> bool:
    """Whether Pillow runs the vertical pass first for this resize, under ``order``."""
    return order == "by-shrink" and height - out_h > 0 and height - out_h > (width - out_w) * 2


def _kernel(src: Source, width: int, height: int, size: tuple[int, int], box: tuple[int, int, int, int],
            interpolation: str, vertical_first: bool, table: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
    """The kernel's crop: ``uint8[bottom - top, right - left, 3]``, or with ``table`` (float32[3, 256]) the
    normalised ``float32[3, bottom - top, right - left]`` written into ``out``."""
    left, top, right, bottom = box
    if out is None:
        out = np.empty((bottom - top, right - left, 3), dtype=np.uint8)
    _resample.resize_crop(src, width, height, size[0], size[1], left, top, right - left, bottom - top,
                          _KERNEL_FILTERS[interpolation], vertical_first, table, out)
    return out


def _arrow(image: Image.Image) -> tuple[object, object] | None:
    """Pillow's own memory of an RGB ``image`` as Arrow capsules (no copy), when this Pillow exports it and the
    image is held in one block (large images are not); else None."""
    export = getattr(image, "__arrow_c_array__", None)
    if export is None:
        return None
    try:
        return export()
    except ValueError:  # "rows are not contiguous in memory": a picture spread over several blocks
        return None


@functools.cache
def kernel_order() -> PassOrder | None:
    """The installed Pillow's pass order as the kernel reproduces it: ``"horizontal"`` (always horizontal first)
    or ``"by-shrink"`` (vertical first where the height loses more than twice as many pixels as the width);
    None when the kernel is not built or does not give Pillow's pixels (then :func:`resize_crop` uses Pillow)."""
    if _resample is None:
        return None
    noise = np.random.default_rng(20261203).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def pillow(src: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
        return np.asarray(Image.fromarray(src).resize(size, resample=PILLOW_FILTERS[name]))

    # Shapes that every Pillow resizes horizontal first (shrinking, growing, one axis each way): the weights.
    for name in _KERNEL_FILTERS:
        for width, height, size in ((61, 23, (17, 9)), (23, 17, (40, 30)), (50, 20, (20, 35))):
            src = np.ascontiguousarray(noise[:height, :width])
            if not np.array_equal(_kernel(src, width, height, size, (0, 0, *size), name, False),
                                  pillow(src, size, name)):
                return None
    # A shape where the two orders give different pixels: which one this Pillow takes.
    src, size = np.ascontiguousarray(noise[:, :9]), (13, 16)
    reference = pillow(src, size, "bicubic")
    if np.array_equal(_kernel(src, 9, 64, size, (0, 0, *size), "bicubic", True), reference):
        return "by-shrink"
    if np.array_equal(_kernel(src, 9, 64, size, (0, 0, *size), "bicubic", False), reference):
        return "horizontal"
    return None


@functools.cache
def _arrow_source() -> bool:
    """Whether the kernel reads this Pillow's exported memory as Pillow's pixels (checked once per process, on
    the shapes of both pass orders and of one axis only)."""
    noise = np.random.default_rng(20261204).integers(0, 256, (64, 40, 3), dtype=np.uint8)
    order = kernel_order()
    for width, height, size in ((40, 64, (17, 30)), (9, 64, (13, 16)), (40, 30, (40, 12)), (40, 30, (25, 30))):
        image = Image.fromarray(np.ascontiguousarray(noise[:height, :width]))
        capsules = _arrow(image)
        if capsules is None or order is None:
            return False
        try:
            got = _kernel(capsules, width, height, size, (0, 0, *size), "bicubic",
                          _vertical_first(order, width, height, *size))
        except ValueError:  # an export the kernel does not read (another layout)
            return False
        if not np.array_equal(got, np.asarray(image.resize(size, resample=Image.Resampling.BICUBIC))):
            return False
    return True


def resize_crop(image: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int], interpolation: str,
                *, normalise: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray | None:
    """``uint8[bottom - top, right - left, 3]``: the crop ``box = (left, top, right, bottom)`` (integers, inside
    ``(0, 0, *size)``) of the RGB ``image`` resized to ``size = (width, height)`` with Pillow's
    ``interpolation`` filter — ``np.asarray(image.resize(size, filter))[top:bottom, left:right]``, bit for bit
    (an image of another mode gets Pillow's own result, in Pillow's array layout). A crop outside the resized
    image raises ``GlimpseError``.

    ``normalise = (table, out)``: where the kernel does the resize, it writes ``table[c][pixel]`` (``table``
    float32[3, 256]) into ``out`` (float32[3, bottom - top, right - left], C-contiguous) and returns None; the
    caller normalises the returned pixels otherwise."""
    left, top, right, bottom = box
    if not (0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]):
        raise GlimpseError(f"crop {box} is not inside the resized image {size}")
    width, height = image.size
    order = kernel_order() if interpolation in _KERNEL_FILTERS and image.mode == "RGB" else None
    src: Source | None = None
    if order is not None:
        src = _arrow(image) if _arrow_source() else None
        if src is None and width * height <= KERNEL_MAX_PIXELS:
            src = np.asarray(image)
    if src is None:
        return np.asarray(image.resize(size, resample=PILLOW_FILTERS[interpolation]))[top:bottom, left:right]
    assert order is not None
    table, out = normalise if normalise is not None else (None, None)
    if out is not None and not (out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable):
        table = out = None  # the kernel writes dense float32 only: the caller normalises
    result = _kernel(src, width, height, size, box, interpolation,
                     _vertical_first(order, width, height, size[0], size[1]), table, out)
    return None if out is not None else result
