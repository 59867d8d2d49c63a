"""glimpse.resample: the crop of Pillow's resize, bit for bit, through the C kernel or Pillow itself."""

from __future__ import annotations

import os
import random
import shutil
import sysconfig

import numpy as np
import pytest
from PIL import Image

from glimpse import resample
from glimpse.errors import GlimpseError
from glimpse.preprocess import preprocess_image
from glimpse.spec import Preprocess

KERNEL_FILTERS = ["box", "bilinear", "hamming", "bicubic", "lanczos"]
LENDS = hasattr(Image.Image, "__arrow_c_array__")  # Pillow >= 11.2 lends its memory (Arrow C data interface)


def pillow_crop(image: Image.Image, size: tuple[int, int], box: tuple[int, int, int, int], name: str) -> np.ndarray:
    left, top, right, bottom = box
    return np.asarray(image.resize(size, resample=resample.PILLOW_FILTERS[name]))[top:bottom, left:right]


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients plus noise and hard edges: values that exercise the clamp and the rounding."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], axis=-1)
    noise = rng.integers(-40, 41, (height, width, 3))
    edges = ((x // 7 + y // 5) % 2)[..., None] * 120
    return Image.fromarray(np.clip(base + noise + edges, 0, 255).astype(np.uint8))


def test_the_kernel_is_built_where_a_compiler_is() -> None:
    # Without this the package silently falls back to Pillow: correct, but three to six times slower to resize.
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    if not (compiler and headers):
        pytest.skip("no C compiler or Python headers here: glimpse uses Pillow to resize")
    assert resample._resample is not None, "glimpse._resample was not built: reinstall with `pip install -e .`"
    assert resample.kernel_order() in ("horizontal", "by-shrink")


needs_kernel = pytest.mark.skipif(resample.kernel_order() is None, reason="glimpse._resample is not built")


@needs_kernel
def test_random_shapes_crops_and_filters_equal_pillow() -> None:
    rng = random.Random(7)
    for trial in range(400):
        width = rng.choice([1, 2, 3, rng.randint(1, 40), rng.randint(100, 700)])
        height = rng.choice([1, 2, rng.randint(1, 40), rng.randint(100, 500)])
        out_w = rng.choice([width, rng.randint(1, 300), 224])
        out_h = rng.choice([height, rng.randint(1, 300), 224])
        crop_w, crop_h = rng.randint(1, out_w), rng.randint(1, out_h)
        left, top = rng.randint(0, out_w - crop_w), rng.randint(0, out_h - crop_h)
        box = (left, top, left + crop_w, top + crop_h)
        image = photo_like(width, height, trial)
        name = KERNEL_FILTERS[trial % len(KERNEL_FILTERS)]
        got = resample.resize_crop(image, (out_w, out_h), box, name)
        assert got.dtype == np.uint8 and got.shape == (crop_h, crop_w, 3)
        np.testing.assert_array_equal(got, pillow_crop(image, (out_w, out_h), box, name),
                                      err_msg=f"{name} {width}x{height} -> {out_w}x{out_h} crop {box}")


@needs_kernel
def test_both_pass_orders_are_taken_as_pillow_takes_them() -> None:
    # Height shrinking far more than width: recent Pillow resamples vertically first, which rounds differently.
    image = photo_like(25, 365, 1)
    for size in [(208, 245), (25, 100), (20, 40), (300, 30)]:
        box = (0, 0, *size)
        np.testing.assert_array_equal(resample.resize_crop(image, size, box, "bicubic"),
                                      pillow_crop(image, size, box, "bicubic"))


@needs_kernel
@pytest.mark.parametrize(("size", "pre"), [
    ((640, 426), Preprocess(224, 224, shortest_edge=224)),
    ((426, 640), Preprocess(224, 224, shortest_edge=224, crop_rounding="round")),
    ((333, 999), Preprocess(384, 384, resize="squash", interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)),
    ((100, 60), Preprocess(224, 224, shortest_edge=256)),  # grows, then crops
    ((120, 50), Preprocess(224, 224, shortest_edge=200)),  # resized smaller than the crop: zero padding
])
def test_preprocessing_is_the_same_with_and_without_the_kernel(size: tuple[int, int], pre: Preprocess,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    image = photo_like(*size, seed=size[0])
    fast = preprocess_image(image, pre)
    monkeypatch.setattr(resample, "kernel_order", lambda: None)
    np.testing.assert_array_equal(fast, preprocess_image(image, pre))


@pytest.mark.parametrize("kernel", [True, False])
def test_preprocessing_into_a_given_array_writes_there(kernel: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    pre = Preprocess(224, 224, shortest_edge=224)
    image = photo_like(427, 640, seed=3)
    if not kernel:
        monkeypatch.setattr(resample, "kernel_order", lambda: None)
    slab = np.full((3, *pre.input_shape), np.nan, np.float32)
    got = preprocess_image(image, pre, out=slab[1])
    assert np.shares_memory(got, slab[1]) and got.shape == pre.input_shape
    np.testing.assert_array_equal(slab[1], preprocess_image(image, pre))
    assert np.isnan(slab[0]).all() and np.isnan(slab[2]).all()  # nothing written outside its row


def test_an_array_of_another_shape_dtype_or_layout_is_refused() -> None:
    from glimpse.errors import UserInputError

    pre = Preprocess(224, 224, shortest_edge=224)
    image = photo_like(300, 200, seed=4)
    for out in (np.empty((3, 224, 225), np.float32), np.empty(pre.input_shape, np.float64),
                np.empty((3, 224, 448), np.float32)[:, :, ::2]):
        with pytest.raises(UserInputError, match="C-contiguous float32"):
            preprocess_image(image, pre, out=out)


def test_without_the_kernel_pillow_resizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample, "_resample", None)
    resample.kernel_order.cache_clear()
    try:
        assert resample.kernel_order() is None
        image = photo_like(90, 70, 3)
        np.testing.assert_array_equal(resample.resize_crop(image, (50, 40), (5, 5, 45, 35), "bicubic"),
                                      pillow_crop(image, (50, 40), (5, 5, 45, 35), "bicubic"))
    finally:
        resample.kernel_order.cache_clear()


@needs_kernel
def test_a_kernel_that_disagrees_with_pillow_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = resample._resample

    class OffByOne:
        @staticmethod
        def resize_crop(*args: object) -> None:
            real.resize_crop(*args)
            out = args[-1]
            out[0, 0, 0] ^= 1  # type: ignore[index]

    monkeypatch.setattr(resample, "_resample", OffByOne)
    resample.kernel_order.cache_clear()
    try:
        assert resample.kernel_order() is None
    finally:
        resample.kernel_order.cache_clear()


@needs_kernel
def test_images_past_the_kernels_size_go_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where Pillow cannot lend its own memory, the kernel takes a packed copy only up to KERNEL_MAX_PIXELS.
    assert resample.kernel_order() is not None and resample._arrow_source() == LENDS  # before the spy goes in
    calls: list[tuple] = []
    real = resample._kernel
    monkeypatch.setattr(resample, "_kernel", lambda *args: calls.append(args) or real(*args))
    monkeypatch.setattr(resample, "_arrow", lambda image: None)
    image = photo_like(90, 70, 4)
    want = pillow_crop(image, (50, 40), (5, 5, 45, 35), "bicubic")
    for limit, used in ((90 * 70 - 1, False), (90 * 70, True)):
        monkeypatch.setattr(resample, "KERNEL_MAX_PIXELS", limit)
        calls.clear()
        np.testing.assert_array_equal(resample.resize_crop(image, (50, 40), (5, 5, 45, 35), "bicubic"), want)
        assert bool(calls) == used
        assert all(isinstance(c[0], np.ndarray) for c in calls)


@needs_kernel
def test_the_kernel_reads_pillows_own_memory_and_a_packed_copy_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resample._arrow_source() == LENDS
    assert resample.kernel_order() is not None  # worked out before the spy goes in
    sources: list[type] = []
    real = resample._kernel

    def spy(src, *args):
        sources.append(type(src))
        return real(src, *args)

    monkeypatch.setattr(resample, "_kernel", spy)
    rng = random.Random(11)
    for trial in range(60):
        width, height = rng.randint(1, 300), rng.randint(1, 300)
        size = (rng.choice([width, rng.randint(1, 250)]), rng.choice([height, rng.randint(1, 250)]))
        box = (0, 0, *size)
        image = photo_like(width, height, trial)
        name = KERNEL_FILTERS[trial % len(KERNEL_FILTERS)]
        in_place = resample.resize_crop(image, size, box, name)
        with monkeypatch.context() as packed:
            packed.setattr(resample, "_arrow", lambda image: None)
            copied = resample.resize_crop(image, size, box, name)
        want = pillow_crop(image, size, box, name)
        np.testing.assert_array_equal(in_place, want, err_msg=f"{name} {width}x{height} -> {size}")
        np.testing.assert_array_equal(copied, want, err_msg=f"{name} {width}x{height} -> {size}")
    assert set(sources) == ({tuple, np.ndarray} if LENDS else {np.ndarray})


@needs_kernel
def test_an_image_pillow_holds_in_several_blocks_is_copied_first() -> None:
    image = photo_like(2600, 1700, 8)  # 17.7 MB in Pillow's 4-byte pixels: more than one 16 MB block
    assert resample._arrow(image) is None
    box = (100, 0, 324, 224)
    np.testing.assert_array_equal(resample.resize_crop(image, (342, 224), box, "bicubic"),
                                  pillow_crop(image, (342, 224), box, "bicubic"))


@needs_kernel
def test_the_kernel_normalises_on_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    table = np.random.default_rng(3).standard_normal((3, 256)).astype(np.float32)
    rng = random.Random(5)
    for trial in range(40):
        width, height = rng.randint(1, 200), rng.randint(1, 200)
        size = (rng.choice([width, rng.randint(1, 150)]), rng.choice([height, rng.randint(1, 150)]))
        cw, ch = rng.randint(1, size[0]), rng.randint(1, size[1])
        left, top = rng.randint(0, size[0] - cw), rng.randint(0, size[1] - ch)
        box = (left, top, left + cw, top + ch)
        image = photo_like(width, height, trial)
        want = pillow_crop(image, size, box, "bicubic")
        for arrow in (True, False):
            with monkeypatch.context() as patch:
                if not arrow:
                    patch.setattr(resample, "_arrow", lambda image: None)
                out = np.full((3, ch, cw), np.nan, np.float32)
                assert resample.resize_crop(image, size, box, "bicubic", normalise=(table, out)) is None
            for channel in range(3):
                np.testing.assert_array_equal(out[channel], table[channel][want[:, :, channel]])
    # An output the kernel cannot fill densely: the pixels come back for the caller to normalise.
    strided = np.zeros((3, 20, 40), np.float32)[:, :, ::2]
    image = photo_like(50, 30, 1)
    got = resample.resize_crop(image, (20, 20), (0, 0, 20, 20), "bicubic", normalise=(table, strided))
    np.testing.assert_array_equal(got, pillow_crop(image, (20, 20), (0, 0, 20, 20), "bicubic"))


def test_nearest_and_other_modes_go_to_pillow() -> None:
    image = photo_like(64, 48, 5)
    np.testing.assert_array_equal(resample.resize_crop(image, (30, 20), (0, 0, 30, 20), "nearest"),
                                  pillow_crop(image, (30, 20), (0, 0, 30, 20), "nearest"))
    grey = image.convert("L")
    np.testing.assert_array_equal(resample.resize_crop(grey, (30, 20), (2, 2, 20, 18), "bicubic"),
                                  pillow_crop(grey, (30, 20), (2, 2, 20, 18), "bicubic"))


@pytest.mark.parametrize("box", [(0, 0, 31, 20), (-1, 0, 10, 10), (5, 5, 5, 10)])
def test_a_crop_outside_the_resized_image_is_refused(box: tuple[int, int, int, int]) -> None:
    with pytest.raises(GlimpseError, match="not inside the resized image"):
        resample.resize_crop(photo_like(64, 48, 0), (30, 20), box, "bicubic")


@needs_kernel
def test_the_kernel_checks_its_buffers() -> None:
    src = np.zeros((10, 12, 3), np.uint8)
    call = resample._resample.resize_crop
    with pytest.raises(ValueError, match="output buffer"):
        call(src, 12, 10, 6, 5, 0, 0, 6, 5, 3, False, None, np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="source buffer"):
        call(src, 11, 10, 6, 5, 0, 0, 6, 5, 3, False, None, np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="filter"):
        call(src, 12, 10, 6, 5, 0, 0, 6, 5, 9, False, None, np.zeros((5, 6, 3), np.uint8))
    table = np.zeros((3, 256), np.float32)
    with pytest.raises(ValueError, match="3 x ch x cw float32"):
        call(src, 12, 10, 6, 5, 0, 0, 6, 5, 3, False, table, np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="table"):
        call(src, 12, 10, 6, 5, 0, 0, 6, 5, 3, False, table[:, :255].copy(), np.zeros((3, 5, 6), np.float32))
    with pytest.raises(ValueError, match="capsules"):
        call((1, 2, 3), 12, 10, 6, 5, 0, 0, 6, 5, 3, False, None, np.zeros((5, 6, 3), np.uint8))
    if not LENDS:
        return
    image = Image.fromarray(src)
    with pytest.raises(ValueError, match="4 bytes"):  # the export's size must be the size it is told
        call(image.__arrow_c_array__(), 12, 9, 6, 5, 0, 0, 6, 5, 3, False, None, np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(ValueError, match="4 bytes"):  # a grey image is one byte per pixel
        call(image.convert("L").__arrow_c_array__(), 12, 10, 6, 5, 0, 0, 6, 5, 3, False, None,
             np.zeros((5, 6, 3), np.uint8))
