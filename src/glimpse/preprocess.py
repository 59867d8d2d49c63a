"""Image preprocessing with numpy + Pillow only (no torch, no transformers): the indexing hot path.

The steps reproduce transformers' PIL image processors (``CLIPImageProcessorPil``,
``ChineseCLIPImageProcessorPil``, ``SiglipImageProcessorPil``, transformers 5.x) exactly, so that an
embedding computed from our pixels equals one computed from theirs:

1. resize with Pillow on the uint8 image (``reducing_gap=None``), either shortest edge -> ``shortest_edge``
   with the long edge ``int(shortest_edge * long / short)`` (truncated), or straight to ``(height, width)``;
2. center crop on the uint8 image: offsets ``(size - crop) // 2``; an image smaller than the crop is
   zero-padded (``ceil`` of half the missing pixels before it), as ``transformers.image_transforms.center_crop``;
3. ``float32(float64(pixel) * rescale)``, then ``(x - float32(mean)) / float32(std)`` in float32.

SigLIP2 NaFlex (``resize="naflex"``, ``Siglip2ImageProcessorPil``) replaces steps 1–2 with a resize, aspect
kept, to the size :func:`naflex_size` finds (transformers' ``get_image_size_for_max_num_patches``: the same
binary search over the scale, in the same float arithmetic), then after step 3 cuts the image into
``patch_size``² patches (row-major, each patch ``[row, col, channel]``-flattened) padded with zero patches to
``max_num_patches``. :func:`pack_naflex` holds them in one array so the pipeline and the encoders handle
NaFlex pixels like any other; :func:`unpack_naflex` gives back transformers' three inputs.

Steps 1–2 compute only the crop: :func:`glimpse.resample.resize_crop` gives the same bytes as Pillow's whole
resize followed by the crop, through a C kernel that resamples only the kept pixels (Pillow itself where the
kernel is not built).

Step 3 only ever sees 256 distinct values per channel, so it is a lookup table computed with exactly the
reference's dtype sequence: bit-identical output without any full-size float64 work. Where the resample kernel
computes the crop, it applies the table itself on the way out (``resize_crop(normalise=...)``).

**Bounded memory.** Steps 1–2 as written resize the *whole* image: a 10000×1 PNG (111 bytes) becomes
2,240,000×224 before the crop keeps 224×224 of it (5 GB of RAM). Pillow resizes in two passes (horizontal,
then vertical, with an ``out_width × source_rows`` image between them, and float64 filter weights for each
axis), so the reference path is kept only while the resized image, that intermediate and the weights take
at most :data:`EXACT_RESIZE_MAX_BYTES`; that covers every photo up to the 100 MP bomb limit with an aspect
ratio up to about 16:1, bit-identical to the reference. Beyond it only the window the model sees is
resampled (:func:`_window_resize`): the source rows and columns the filter reaches are cut out, then resized
one axis at a time with the same filter and the same source coordinates as the full resize, in Pillow's
order (vertical first only where that order would leave a giant intermediate, as for a 1×10⁸ image
squashed to 224×224). The result equals the reference up to Pillow's coefficient rounding: in the uint8
pixels (measured with bicubic, bilinear and lanczos on 5:1 to 1000:1 images): photo-like content differs
by at most 1 level on at most 8 % of the values; pure noise, the worst case, by at most 3 levels
(shortest-edge + crop) or 7 levels (squash) on up to a quarter of them;
``tests/test_hostile_files.py`` checks the bound on 20:1 images. No step then holds more than the crop window
(plus filter margin) in source pixels, the output, or ``_MAX_INTERMEDIATE_PIXELS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np
from PIL import Image

from glimpse.errors import ImageError, ModelError, UserInputError
from glimpse.resample import PILLOW_FILTERS, resize_crop
from glimpse.spec import Preprocess

EXACT_RESIZE_MAX_BYTES: int = 64 * 2**20
"""Most memory the reference resize of a whole image may take (result, intermediate, filter weights)."""

# The window path keeps Pillow's horizontal-then-vertical order (same rounding as the reference) unless its
# intermediate (out_width × source rows) would pass this; then it goes vertical first.
_MAX_INTERMEDIATE_PIXELS = 16_000_000

# Pillow precomputes ``ksize × out`` float64 filter weights per axis, about 32 bytes per source pixel when
# shrinking (3.2 GB for a 1×10⁸ image squashed to 224 rows). Beyond this factor the window path first
# box-averages by an integer factor (``Image.reduce``, via ``reducing_gap``), keeping the weights small.
_REDUCING_GAP = 64.0

# Half-width of each Pillow filter in source pixels at scale 1 (Pillow's src/libImaging/Resample.c).
_SUPPORT: dict[str, float] = {
    "nearest": 0.5, "box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0,
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


def crop_offset(excess: int, rounding: str = "floor") -> int:
    """Where a center crop starts when the image is ``excess`` pixels longer than the crop (see
    ``Preprocess.crop_rounding``); a negative excess (too small an image) always floors, as the references'
    padding path does."""
    if rounding == "round" and excess > 0:
        return round(excess / 2)
    return excess // 2


def _center_crop(array: np.ndarray, crop_h: int, crop_w: int, rounding: str = "floor") -> np.ndarray:
    """Center crop of ``uint8[H, W, 3]`` to ``uint8[crop_h, crop_w, 3]``, zero-padding a too small image."""
    height, width = array.shape[:2]
    top = crop_offset(height - crop_h, rounding)
    left = crop_offset(width - crop_w, rounding)
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
    if pre.resize == "naflex" and not (pre.patch_size and pre.max_num_patches):
        raise ModelError("NaFlex preprocessing needs a positive patch_size and max_num_patches in the spec")
    if pre.interpolation not in PILLOW_FILTERS:
        raise ModelError(f"unknown interpolation {pre.interpolation!r}; expected one of {sorted(PILLOW_FILTERS)}")


def _weights_bytes(source: int, out: int, interpolation: str) -> int:
    """Pillow's float64 filter weights for one axis: ``out × ksize``, the kernel widened when shrinking."""
    support = _SUPPORT[interpolation] * max(source / out, 1.0)
    return out * (2 * math.ceil(support) + 1) * 8


def _exact_cost(width: int, height: int, size: tuple[int, int], interpolation: str) -> int:
    """Bytes Pillow holds to resize a whole ``width × height`` image to ``size`` (4 bytes per RGB pixel):
    the result, the horizontal pass's ``out_width × height`` image, and both axes' filter weights."""
    out_w, out_h = size
    pixels = out_w * out_h + out_w * height
    return 4 * pixels + _weights_bytes(width, out_w, interpolation) + _weights_bytes(height, out_h, interpolation)


def _margin(source_span: float, out_span: int, interpolation: str) -> int:
    """Source pixels the filter reaches beyond a window (Pillow widens the kernel when shrinking)."""
    scale = max(source_span / out_span, 1.0)
    return math.ceil(_SUPPORT[interpolation] * scale) + 1


def _window_resize(image: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float],
                   interpolation: str) -> Image.Image:
    """Resample the source window ``box`` (float source coordinates, like Pillow's ``box``) to ``size``.

    Same filter and the same source coordinates as ``image.resize(full_size)`` cropped to the window, but
    done one axis at a time on the source pixels the filter can reach: horizontal first as Pillow does (same
    rounding), unless that intermediate would exceed ``_MAX_INTERMEDIATE_PIXELS`` and the other order is
    smaller (a 1×10⁸ image squashed to 224×224), so no step is larger than the window (plus filter margin)
    or ``size``, or that bound.
    """
    out_w, out_h = size
    x0, y0, x1, y1 = box
    mx, my = _margin(x1 - x0, out_w, interpolation), _margin(y1 - y0, out_h, interpolation)
    c0, r0 = max(0, math.floor(x0) - mx), max(0, math.floor(y0) - my)
    c1, r1 = min(image.width, math.ceil(x1) + mx), min(image.height, math.ceil(y1) + my)
    if (c0, r0, c1, r1) != (0, 0, image.width, image.height):
        image = image.crop((c0, r0, c1, r1))  # a plain copy of the reachable pixels: no resampling yet
    x0, x1, y0, y1 = x0 - c0, x1 - c0, y0 - r0, y1 - r0
    cols, rows = c1 - c0, r1 - r0
    resample = PILLOW_FILTERS[interpolation]

    def resize(im: Image.Image, to: tuple[int, int], window: tuple[float, float, float, float]) -> Image.Image:
        return im.resize(to, resample=resample, box=window, reducing_gap=_REDUCING_GAP)

    if out_w * rows <= max(cols * out_h, _MAX_INTERMEDIATE_PIXELS):  # Pillow's order, unless it is the giant
        wide = resize(image, (out_w, rows), (x0, 0, x1, rows))
        return resize(wide, (out_w, out_h), (0, y0, out_w, y1))
    tall = resize(image, (cols, out_h), (0, y0, cols, y1))
    return resize(tall, (out_w, out_h), (x0, 0, x1, out_h))


def _resize_and_crop(image: Image.Image, pre: Preprocess,
                     normalise: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray | None:
    """Steps 1–2: ``uint8[pre.height, pre.width, 3]`` of an RGB image, in bounded memory (see the module doc).

    ``normalise = (table, out)``: where the resample kernel computes the crop, it also does step 3 into ``out``
    (``float32[3, pre.height, pre.width]``) and None is returned."""
    width, height = image.size
    size = resize_size(width, height, pre)
    new_w, new_h = size
    exact = _exact_cost(width, height, size, pre.interpolation) <= EXACT_RESIZE_MAX_BYTES
    if pre.resize == "squash":
        if exact:
            return resize_crop(image, size, (0, 0, new_w, new_h), pre.interpolation, normalise=normalise)
        return np.asarray(_window_resize(image, size, (0.0, 0.0, float(width), float(height)), pre.interpolation))
    top = crop_offset(new_h - pre.height, pre.crop_rounding)
    left = crop_offset(new_w - pre.width, pre.crop_rounding)
    if exact:
        if top >= 0 and left >= 0:  # only the crop is resampled (glimpse.resample), bit for bit the reference's
            return resize_crop(image, size, (left, top, left + pre.width, top + pre.height), pre.interpolation,
                               normalise=normalise)
        resized = resize_crop(image, size, (0, 0, new_w, new_h), pre.interpolation)
        assert resized is not None
        return _center_crop(resized, pre.height, pre.width, pre.crop_rounding)
    # Only the crop window (clipped to the resized image; the rest is the reference's zero padding).
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(new_w, left + pre.width), min(new_h, top + pre.height)
    sx, sy = width / new_w, height / new_h
    window = _window_resize(image, (x1 - x0, y1 - y0), (x0 * sx, y0 * sy, x1 * sx, y1 * sy), pre.interpolation)
    if (x1 - x0, y1 - y0) == (pre.width, pre.height):
        return np.asarray(window)
    out = np.zeros((pre.height, pre.width, 3), dtype=np.uint8)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = np.asarray(window)
    return out


def naflex_size(height: int, width: int, patch_size: int, max_num_patches: int, eps: float = 1e-5) -> tuple[int, int]:
    """``(height, width)`` a NaFlex image is resized to: multiples of ``patch_size``, at least one patch each,
    at most ``max_num_patches`` patches, aspect kept as well as whole patches allow.

    The binary search of transformers' ``get_image_size_for_max_num_patches``, step for step (the result
    depends on where the search stops, so it is reproduced, not solved in closed form).
    """

    def scaled(scale: float, size: int) -> int:
        return int(max(patch_size, math.ceil(size * scale / patch_size) * patch_size))

    low, high = eps / 10, 100.0
    while (high - low) >= eps:
        scale = (low + high) / 2
        patches = (scaled(scale, height) / patch_size) * (scaled(scale, width) / patch_size)
        if patches <= max_num_patches:
            low = scale
        else:
            high = scale
    return scaled(low, height), scaled(low, width)


def pack_naflex(pixels: np.ndarray, patch_size: int, out: np.ndarray) -> None:
    """Patchify normalised ``float32[3, h, w]`` into ``out`` (``float32[max_num_patches + 1, 3 * p**2]``).

    Row 0 holds the grid ``(h // p, w // p)`` in its first two entries (transformers' ``spatial_shapes``;
    exact in float32), rows ``1 .. h*w/p²`` the patches in transformers' order, the rest zeros (padding).
    """
    _, height, width = pixels.shape
    rows, cols = height // patch_size, width // patch_size
    patches = pixels.reshape(3, rows, patch_size, cols, patch_size).transpose(1, 3, 2, 4, 0)
    out[:] = 0.0
    out[0, :2] = (rows, cols)
    out[1 : 1 + rows * cols] = patches.reshape(rows * cols, -1)


def unpack_naflex(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``float32[n, N + 1, 3p²]`` -> transformers' ``pixel_values`` ``float32[n, N, 3p²]``,
    ``pixel_attention_mask`` ``int32[n, N]`` (1 on real patches) and ``spatial_shapes`` ``int64[n, 2]``."""
    packed = np.asarray(packed, dtype=np.float32)
    shapes = packed[:, 0, :2].astype(np.int64)
    count = packed.shape[1] - 1
    mask = (np.arange(count)[None, :] < shapes.prod(axis=1)[:, None]).astype(np.int32)
    return packed[:, 1:], mask, shapes


def _fill(out: np.ndarray, image: Image.Image, pre: Preprocess) -> None:
    """Write the preprocessed ``image`` into ``out`` (``float32[*pre.input_shape]``)."""
    if not isinstance(image, Image.Image):
        raise UserInputError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    target = pre
    if pre.resize == "naflex":
        patch = int(pre.patch_size or 0)
        new_h, new_w = naflex_size(height, width, patch, int(pre.max_num_patches or 0))
        # A NaFlex resize is a squash to the size found for this image (aspect kept by that size).
        target = replace(pre, resize="squash", height=new_h, width=new_w)
    table = _lookup_table(float(pre.rescale), tuple(pre.mean), tuple(pre.std))
    chw = out if pre.resize != "naflex" else np.empty((3, target.height, target.width), dtype=np.float32)
    array = _resize_and_crop(_to_rgb(image), target, (table, chw))
    if array is not None:  # not normalised by the resample kernel
        for channel in range(3):
            # take() with a uint8 index is a gather from the 256-entry table: no float work per pixel.
            np.take(table[channel], array[:, :, channel], out=chw[channel])
    if pre.resize == "naflex":
        pack_naflex(chw, int(pre.patch_size or 0), out)


def preprocess_image(image: Image.Image, pre: Preprocess, *, out: np.ndarray | None = None) -> np.ndarray:
    """Preprocess one RGB PIL image into ``float32[*pre.input_shape]``: ``[3, pre.height, pre.width]`` (C, H, W),
    or NaFlex's packed patches (``pack_naflex``). ``out``: a C-contiguous array of that shape and dtype to write
    into (the indexer's batch slab row); it is returned."""
    _check(pre)
    if out is None:
        out = np.empty(pre.input_shape, dtype=np.float32)
    elif out.shape != pre.input_shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise UserInputError(f"out must be a C-contiguous float32{list(pre.input_shape)}, "
                         f"got {out.dtype}{list(out.shape)}")
    _fill(out, image, pre)
    return out


def preprocess_batch(images: Sequence[Image.Image], pre: Preprocess) -> np.ndarray:
    """Preprocess RGB PIL images into ``float32[n, *pre.input_shape]`` (``[n, 3, H, W]`` but for NaFlex)."""
    _check(pre)
    out = np.empty((len(images), *pre.input_shape), dtype=np.float32)
    for i, image in enumerate(images):
        _fill(out[i], image, pre)
    return out
