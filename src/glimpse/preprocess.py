"""Image preprocessing with numpy + Pillow only (no torch, no transformers): the indexing hot path.

The steps reproduce transformers' PIL image processors (``CLIPImageProcessorPil``,
``ChineseCLIPImageProcessorPil``, ``SiglipImageProcessorPil``, transformers 5.x) exactly, so that an
embedding computed from our pixels equals one computed from theirs:

1. resize with Pillow on the uint8 image (``reducing_gap=None``), either shortest edge -> ``shortest_edge``
   with the long edge ``int(shortest_edge * long / short)`` (truncated), or straight to ``(height, width)``;
2. center crop on the uint8 image: offsets ``(size - crop) // 2``; an image smaller than the crop is
   zero-padded (``ceil`` of half the missing pixels before it), as ``transformers.image_transforms.center_crop``;
3. ``float32(float64(pixel) * rescale)``, then ``(x - float32(mean)) / float32(std)`` in float32.

Step 3 only ever sees 256 distinct values per channel, so it is a lookup table computed with exactly the
reference's dtype sequence: bit-identical output without any full-size float64 work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from glimpse.errors import ImageError, ModelError, UserInputError
from glimpse.spec import Preprocess

_RESAMPLE: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resize_size(width: int, height: int, pre: Preprocess) -> tuple[int, int]:
    """The ``(width, height)`` an image of ``width`` x ``height`` is resized to before cropping."""
    if pre.resize == "squash":
        return pre.width, pre.height
    size = int(pre.shortest_edge or min(pre.height, pre.width))
    short, long = (width, height) if width <= height else (height, width)
    # Same float arithmetic and truncation as transformers' get_resize_output_image_size.
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


@lru_cache(maxsize=32)
def _lookup_table(rescale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``float32[3, 256]``: the normalised value of each uint8 level per channel."""
    levels = (np.arange(256, dtype=np.float64) * rescale).astype(np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    table = (levels[None, :] - mean32) / std32
    table.setflags(write=False)
    return table


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    # Like transformers' convert_to_rgb: transparency is composited onto white, not dropped to black.
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _center_crop(array: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """Center crop of ``uint8[H, W, 3]`` to ``uint8[crop_h, crop_w, 3]``, zero-padding a too small image."""
    height, width = array.shape[:2]
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return array[top : top + crop_h, left : left + crop_w]
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    top_pad = math.ceil((new_h - height) / 2)
    left_pad = math.ceil((new_w - width) / 2)
    padded = np.zeros((new_h, new_w, array.shape[2]), dtype=array.dtype)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = array
    top += top_pad
    left += left_pad
    return padded[max(0, top) : min(new_h, top + crop_h), max(0, left) : min(new_w, left + crop_w)]


def _check(pre: Preprocess) -> None:
    if pre.resize == "shortest" and not pre.crop:
        raise ModelError(
            "preprocessing resizes the shortest edge without a center crop, so images would keep "
            "different sizes; the spec must set crop=True (or resize='squash')"
        )
    if pre.interpolation not in _RESAMPLE:
        raise ModelError(f"unknown interpolation {pre.interpolation!r}; expected one of {sorted(_RESAMPLE)}")


def _fill(out: np.ndarray, image: Image.Image, pre: Preprocess) -> None:
    """Write the preprocessed ``image`` into ``out`` (``float32[3, H, W]``)."""
    if not isinstance(image, Image.Image):
        raise UserInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    image = _to_rgb(image)
    image = image.resize(resize_size(width, height, pre), resample=_RESAMPLE[pre.interpolation])
    array = np.asarray(image)
    if pre.resize == "shortest":
        array = _center_crop(array, pre.height, pre.width)
    table = _lookup_table(float(pre.rescale), tuple(pre.mean), tuple(pre.std))
    for channel in range(3):
        # take() with a uint8 index is a gather from the 256-entry table: no float work per pixel.
        np.take(table[channel], array[:, :, channel], out=out[channel])


def preprocess_image(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """Preprocess one RGB PIL image into ``float32[3, pre.height, pre.width]`` (C, H, W)."""
    _check(pre)
    out = np.empty((3, pre.height, pre.width), dtype=np.float32)
    _fill(out, image, pre)
    return out


def preprocess_batch(images: Sequence[Image.Image], pre: Preprocess) -> np.ndarray:
    """Preprocess RGB PIL images into ``float32[n, 3, pre.height, pre.width]``."""
    _check(pre)
    out = np.empty((len(images), 3, pre.height, pre.width), dtype=np.float32)
    for i, image in enumerate(images):
        _fill(out[i], image, pre)
    return out
