"""Pillow's resize of an RGB image, computing only the crop of it that a model sees.

:func:`resize_crop` returns exactly ``np.asarray(image.resize(size, filter))[top:bottom, left:right]``. It uses
the C kernel ``glimpse._resample`` (``_resample.c``) when the package was built with it and the kernel
reproduces the installed Pillow, and Pillow itself otherwise: the same pixels either way.

Why a kernel: the resize is the largest CPU cost of indexing after the encoder (about 3 ms of a 640×426 photo's
5 ms here), and the references (transformers' PIL processors, open_clip) define their pixels by Pillow's
arithmetic, so a faster resampler must give the same bytes, not nearly the same. The kernel computes only the
pixels the center crop keeps and runs both passes over contiguous memory; ``benchmarks/resize_speed.py``
compares it with Pillow (docs/BENCHMARKS.md).

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
"""Largest source (width × height) the kernel takes; bigger images are resized by Pillow. The kernel reads a
packed copy of the pixels (``np.asarray``: 3 bytes per pixel, twice that while Pillow packs it): for a 100 MP PNG
that is 600 MB above Pillow's own resize, and past about 10 MP the copy costs more time than the kernel saves
(12 MP: 87 vs 78 ms; 8 MP: 23 vs 44 ms; a drafted JPEG never gets near)."""


def _vertical_first(order: PassOrder, width: int, height: int, out_w: int, out_h: int) -> bool:
    """Whether Pillow runs the vertical pass first for this resize, under ``order``."""
    return order == "by-shrink" and height - out_h > 0 and height - out_h > (width - out_w) * 2


def _kernel(src: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int], interpolation: str,
            vertical_first: bool) -> np.ndarray:
    height, width = src.shape[:2]
    left, top, right, bottom = box
    out = np.empty((bottom - top, right - left, 3), dtype=np.uint8)
    _resample.resize_crop(src, width, height, size[0], size[1], left, top, right - left, bottom - top,
                          _KERNEL_FILTERS[interpolation], vertical_first, out)
    return out


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
            if not np.array_equal(_kernel(src, size, (0, 0, *size), name, False), pillow(src, size, name)):
                return None
    # A shape where the two orders give different pixels: which one this Pillow takes.
    src, size = np.ascontiguousarray(noise[:, :9]), (13, 16)
    reference = pillow(src, size, "bicubic")
    if np.array_equal(_kernel(src, size, (0, 0, *size), "bicubic", True), reference):
        return "by-shrink"
    if np.array_equal(_kernel(src, size, (0, 0, *size), "bicubic", False), reference):
        return "horizontal"
    return None


def resize_crop(image: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int],
                interpolation: str) -> np.ndarray:
    """``uint8[bottom - top, right - left, 3]``: the crop ``box = (left, top, right, bottom)`` (integers, inside
    ``(0, 0, *size)``) of the RGB ``image`` resized to ``size = (width, height)`` with Pillow's
    ``interpolation`` filter — ``np.asarray(image.resize(size, filter))[top:bottom, left:right]``, bit for bit
    (an image of another mode gets Pillow's own result, in Pillow's array layout). A crop outside the resized
    image raises ``GlimpseError``."""
    left, top, right, bottom = box
    if not (0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]):
        raise GlimpseError(f"crop {box} is not inside the resized image {size}")
    width, height = image.size
    usable = interpolation in _KERNEL_FILTERS and image.mode == "RGB" and width * height <= KERNEL_MAX_PIXELS
    order = kernel_order() if usable else None
    if order is None:
        return np.asarray(image.resize(size, resample=PILLOW_FILTERS[interpolation]))[top:bottom, left:right]
    return _kernel(np.asarray(image), size, box, interpolation,
                   _vertical_first(order, width, height, size[0], size[1]))
