"""Files that used to hang the indexer or exhaust memory, and names that used to act on the terminal.

* extreme aspect ratios: a 10000×1 PNG resized whole was a 2,240,000×224 image (5 GB); only the crop window
  is resampled now, within a tolerance of the reference on elongated images;
* FIFOs and devices (named .jpg, or swapped in for a file after the scan) are refused, never waited on;
* non-image content is refused from its first bytes, a file larger than any image within the pixel limit
  from its size, and the content hash is streamed: a big file is never read into memory;
* every candidate the scan meets gets a reason (special files, paths over PATH_MAX, unlistable folders);
* names with ESC, CR, LF are printed escaped in human output.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glimpse import images
from glimpse import preprocess as preprocess_module
from glimpse.catalog import STATE_ERROR, STATE_OK
from glimpse.errors import ImageError, ImageTooLargeError
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, decode_image, open_image
from glimpse.pipeline import Task, prepare, scan
from glimpse.preprocess import preprocess_image, resize_size
from glimpse.spec import Preprocess
from hostile import encode, picture

CLIP = Preprocess(height=224, width=224, shortest_edge=224)
SIGLIP = Preprocess(height=224, width=224, resize="squash", crop=False)


def png_file(path: Path, size: tuple[int, int], colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.write_bytes(encode(Image.new("RGB", size, colour), "PNG"))
    return path


@pytest.fixture()
def resize_outputs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image ``Image.resize`` returns while the test runs."""
    sizes: list[tuple[int, int]] = []
    original = Image.Image.resize

    def recording(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        out = original(self, *args, **kwargs)  # type: ignore[arg-type]
        sizes.append(out.size)
        return out

    monkeypatch.setattr(Image.Image, "resize", recording)
    return sizes


def bytes_read_by_this_process() -> int:
    """``rchar`` of /proc/self/io: every byte this process has read through read() calls so far."""
    path = Path("/proc/self/io")
    if not path.exists():
        pytest.skip("needs Linux /proc/self/io to count the bytes read")
    fields = dict(line.split(": ") for line in path.read_text().splitlines())
    return int(fields["rchar"])


# -- extreme aspect ratios (item 8) ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(10_000, 1), (1, 10_000), (100_000, 1), (3, 200_000)])
def test_extreme_aspect_png_is_preprocessed_within_a_bounded_size(tmp_path: Path, size: tuple[int, int],
                                                                 resize_outputs: list[tuple[int, int]]) -> None:
    """A 111-byte 10000×1 PNG used to be resized to 2,240,000×224 (5 GB) before the crop."""
    path = png_file(tmp_path / "line.png", size)
    assert path.stat().st_size < 10_000
    decoded = open_image(path, min_side=CLIP.min_side)
    assert (decoded.width, decoded.height) == size
    pixels = preprocess_image(decoded.image, CLIP)
    assert pixels.shape == (3, 224, 224) and pixels.dtype == np.float32
    # Every resized image is a crop window (plus filter margin) or the output, never the whole resized giant.
    assert resize_outputs and max(w * h for w, h in resize_outputs) <= 224 * 512
    # The colour survives: the model sees the line's red, not zero padding or garbage.
    mean = np.asarray(CLIP.mean, dtype=np.float32)
    std = np.asarray(CLIP.std, dtype=np.float32)
    red = (np.array([200, 30, 30], dtype=np.float32) / 255 - mean) / std
    np.testing.assert_allclose(pixels[:, 112, 112], red, atol=0.02)


@pytest.mark.parametrize("size", [(1, 2_000_000), (2_000_000, 1)])
def test_extreme_aspect_squash_model_gets_its_shape(size: tuple[int, int],
                                                   resize_outputs: list[tuple[int, int]]) -> None:
    image = Image.new("RGB", size, (10, 200, 10))
    pixels = preprocess_image(image, SIGLIP)
    assert pixels.shape == (3, 224, 224)
    # No Pillow resize is larger than a few outputs (the exact path's C kernel, glimpse.resample, makes none).
    assert max((w * h for w, h in resize_outputs), default=0) <= 224 * 224 * 4
    mean, std = np.asarray(SIGLIP.mean, dtype=np.float32), np.asarray(SIGLIP.std, dtype=np.float32)
    expected = (np.array([10, 200, 10], dtype=np.float32) / 255 - mean) / std
    np.testing.assert_allclose(pixels[:, 100, 100], expected, atol=0.02)


def reference_uint8(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """The reference steps 1–2 (transformers' processor): resize the whole image, then center-crop."""
    size = resize_size(image.width, image.height, pre)
    resized = np.asarray(image.resize(size, resample=Image.Resampling[pre.interpolation.upper()]))
    if pre.resize == "squash":
        return resized
    top, left = (size[1] - pre.height) // 2, (size[0] - pre.width) // 2
    return resized[top : top + pre.height, left : left + pre.width]


def levels(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """float32[3, H, W] normalised pixels back to (float) uint8 levels."""
    mean = np.asarray(pre.mean, dtype=np.float64)[:, None, None]
    std = np.asarray(pre.std, dtype=np.float64)[:, None, None]
    return (pixels.astype(np.float64) * std + mean) / pre.rescale


@pytest.mark.parametrize("size", [(2000, 100), (100, 2000), (4000, 150)])
@pytest.mark.parametrize("pre", [CLIP, Preprocess(height=384, width=384, shortest_edge=384, interpolation="lanczos"),
                                 Preprocess(height=224, width=224, shortest_edge=256, interpolation="bilinear"),
                                 SIGLIP], ids=["clip", "lanczos384", "bilinear256", "squash"])
def test_window_path_matches_the_full_resize_on_elongated_images(monkeypatch: pytest.MonkeyPatch,
                                                                  size: tuple[int, int], pre: Preprocess) -> None:
    """The documented tolerance: with the whole-image resize forbidden, a moderately elongated photo goes
    through the window path and lands within 1 level of the reference on a few per cent of its values."""
    image = picture(sum(size), size)
    reference = reference_uint8(image, pre).astype(np.int64)
    monkeypatch.setattr(preprocess_module, "EXACT_RESIZE_MAX_BYTES", 0)
    ours = np.rint(levels(preprocess_image(image, pre), pre)).astype(np.int64).transpose(1, 2, 0)
    diff = np.abs(ours - reference)
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 0.08


def test_normal_photos_take_the_exact_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ordinary photos, up to the bomb limit, stay bit-identical to the reference (no window path)."""
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a normal photo took the window path")

    monkeypatch.setattr(preprocess_module, "_window_resize", forbidden)
    for size in [(640, 480), (480, 640), (1200, 150), (300, 1)]:
        image = picture(7, size)
        np.testing.assert_array_equal(levels(preprocess_image(image, CLIP), CLIP).round().transpose(1, 2, 0),
                                      reference_uint8(image, CLIP))
    assert preprocess_module._exact_cost(11547, 8660, resize_size(11547, 8660, CLIP), "bicubic") \
        <= preprocess_module.EXACT_RESIZE_MAX_BYTES  # a 100 MP 4:3 PNG


# -- FIFOs and special files (item 9) -------------------------------------------------------------------


def run_unblocked(fn, *args, **kwargs):
    """Run ``fn`` in a thread; a call that blocks (a plain open() of a FIFO waits for a writer forever)
    fails the test instead of hanging it. The generous join is a hang guard, not a timing assertion."""
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn(*args, **kwargs)), daemon=True)
    thread.start()
    thread.join(60)
    return thread, result.get("value")


def release_fifo(path: Path) -> None:
    """Open the write end once, so a reader blocked on the FIFO (the bug) gets EOF and its thread ends."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader is waiting (the fixed code never opened it for reading)
        return
    os.close(fd)


def test_file_swapped_for_a_fifo_after_the_scan_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = png_file(tmp_path / "photo.png", (32, 32))
    found = next(iter(scan([str(tmp_path)])))
    assert found.problem is None
    path.unlink()
    os.mkfifo(path)
    try:
        thread, prepared = run_unblocked(prepare, Task(found.path, found.size, found.mtime_ns, None), CLIP)
        assert not thread.is_alive(), "prepare() blocked on a FIFO"
    finally:
        release_fifo(path)
    assert prepared.update.state == STATE_ERROR
    assert prepared.update.error == "cannot read file: not a regular file (FIFO)"


def test_the_safe_opener_refuses_every_kind_of_special_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"^cannot read file: not a regular file \(FIFO\)$"):
        images.open_regular_file(fifo)
    with pytest.raises(ImageError, match=r"not a regular file \(character device\)$"):
        images.open_regular_file("/dev/zero")
    with pytest.raises(ImageError, match=r"is a directory$"):
        images.open_regular_file(tmp_path)
    with images.open_regular_file(png_file(tmp_path / "ok.png", (4, 4))) as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


# -- sniff first, stream the hash, cap the size (item 10) -----------------------------------------------


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """``head`` followed by zeros up to ``size`` bytes, without writing them (a sparse file)."""
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


@pytest.mark.parametrize(("head", "reason"), [
    (b"Shopping list:\n- milk\n- eggs\n" * 20, "not an image: looks like text"),
    (b"", "not an image: unrecognised content (starts with 00 00"),
    (b"%PDF-1.7\n", "looks like a PDF document"),
])
def test_non_image_content_is_refused_from_its_first_bytes(tmp_path: Path, head: bytes, reason: str) -> None:
    """A 64 MB big.jpg used to be read whole (and copied) before the first bytes were looked at."""
    path = sparse_file(tmp_path / "big.jpg", head, 64 * 2**20)
    before = bytes_read_by_this_process()
    prepared = prepare(Task(str(path), path.stat().st_size, path.stat().st_mtime_ns, None), CLIP)
    read = bytes_read_by_this_process() - before
    assert prepared.update.state == STATE_ERROR
    assert reason in prepared.update.error
    assert read < 2 * 2**20, f"read {read} bytes of a 64 MB file to refuse it"
    # the other door (thumbnails, image queries, tagging): decoded from the open file, not from a copy
    before = bytes_read_by_this_process()
    with pytest.raises(ImageError, match=reason.split(" (")[0]):
        open_image(path, min_side=224)
    assert bytes_read_by_this_process() - before < 2 * 2**20


def test_a_file_larger_than_any_image_within_the_limit_is_refused_unread(tmp_path: Path) -> None:
    assert images.max_file_bytes(DEFAULT_MAX_MEGAPIXELS) == 100_000_000 * 8 + 64 * 2**20
    assert images.max_file_bytes(float("inf")) is None
    images.check_file_size(images.max_file_bytes(1.0), 1.0)  # the limit itself is allowed
    with pytest.raises(ImageTooLargeError, match=r"^file is 75 MB, more than an image within the 1 MP limit"):
        images.check_file_size(images.max_file_bytes(1.0) + 1, 1.0)
    with pytest.raises(ImageTooLargeError, match=r"^file is 1.2 GB, more than an image within the 100 MP limit "
                                                 r"can take \(867 MB\); raise --max-megapixels if it really is one"):
        images.check_file_size(1_200_000_000)
    png = encode(Image.new("RGB", (8, 8)), "PNG")
    path = sparse_file(tmp_path / "huge.png", png, 80 * 2**20)  # a valid PNG start, then 80 MB
    before = bytes_read_by_this_process()
    prepared = prepare(Task(str(path), path.stat().st_size, path.stat().st_mtime_ns, None), CLIP, max_megapixels=1)
    read = bytes_read_by_this_process() - before
    assert prepared.update.state == STATE_ERROR
    assert "more than an image within the 1 MP limit can take" in prepared.update.error
    assert "raise --max-megapixels" in prepared.update.error
    assert read < 2 * 2**20
    with pytest.raises(ImageTooLargeError, match="more than an image"):
        open_image(path, max_megapixels=1)


def test_streamed_hash_is_the_catalogs_digest_and_decoding_reads_from_the_file(tmp_path: Path) -> None:
    """Existing catalogs stay valid: the digest is still blake2b-128 of the whole file's bytes."""
    data = encode(picture(3, (300, 200)), "PNG") + os.urandom(3 * 2**20)  # trailing bytes: several blocks
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    prepared = prepare(Task(str(path), len(data), path.stat().st_mtime_ns, None), CLIP)
    assert prepared.update.state == STATE_OK
    assert prepared.update.hash == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert prepared.pixels is not None and prepared.pixels.shape == (3, 224, 224)
    # decode_image takes the open file as well as bytes, with the same result
    with images.open_regular_file(path) as fh:
        from_file = decode_image(fh, min_side=224)
    assert np.array_equal(np.asarray(from_file.image), np.asarray(decode_image(data, min_side=224).image))
    assert decode_image(io.BytesIO(data)).format == "PNG"


# -- every candidate gets a reason (item 11) ------------------------------------------------------------


def scanned(root: Path) -> dict[str, str | None]:
    return {os.path.relpath(f.path, root): f.problem for f in scan([str(root)])}


def test_scan_reports_special_files_with_image_names(tmp_path: Path) -> None:
    png_file(tmp_path / "ok.png", (4, 4))
    os.mkfifo(tmp_path / "fifo.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    os.mkfifo(tmp_path / "plain-pipe")  # no image name: not a candidate, passed over
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock.png"))
        found = scanned(tmp_path)
    finally:
        sock.close()
    assert found == {
        "ok.png": None,
        "fifo.jpg": "cannot read file: not a regular file (FIFO)",
        "zero.jpg": "cannot read file: not a regular file (character device)",
        "sock.png": "cannot read file: not a regular file (socket)",
    }


def test_scan_reports_a_special_file_given_as_a_root(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    assert [(f.path, f.problem) for f in scan([str(tmp_path / "fifo.jpg")])] == [
        (str(tmp_path / "fifo.jpg"), "cannot read file: not a regular file (FIFO)")]


def test_scan_reports_paths_longer_than_path_max(tmp_path: Path) -> None:
    """A tree deeper than PATH_MAX (4096 bytes on Linux): its deep part cannot be opened by path."""
    name = "d" * 200
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(25):  # 25 × 201 bytes > 4096
            os.mkdir(name, dir_fd=fd)
            deeper = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        image = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(image, encode(picture(1, (8, 8)), "JPEG"))
        os.close(image)
    finally:
        os.close(fd)
    found = list(scan([str(tmp_path)]))
    assert len(found) == 1  # the first entry over the limit is reported; nothing below it can be named
    assert len(os.fsencode(found[0].path)) >= 4096
    assert found[0].problem is not None and found[0].problem.startswith("path too long (over the system's")
    prepared = prepare(Task(found[0].path, found[0].size, found[0].mtime_ns, None, found[0].problem), CLIP)
    assert prepared.update.state == STATE_ERROR and "path too long" in prepared.update.error


def test_scan_reports_a_folder_it_cannot_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 does not stop root, so the refusal is made by os.scandir itself."""
    png_file(tmp_path / "ok.png", (4, 4))
    (tmp_path / "locked").mkdir()
    png_file(tmp_path / "locked" / "hidden.png", (4, 4))
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert scanned(tmp_path) == {
        "ok.png": None,
        "locked": "cannot list folder: permission denied (its images are not indexed)",
    }


def test_index_run_reports_fifos_and_device_links(open_lib, tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    pics.mkdir()
    png_file(pics / "ok.png", (64, 48))
    os.mkfifo(pics / "fifo.jpg")
    os.symlink("/dev/zero", pics / "zero.jpg")
    lib = open_lib()
    thread, report = run_unblocked(lib.index, [pics])
    assert not thread.is_alive(), "indexing blocked"
    release_fifo(pics / "fifo.jpg")
    assert report.added == 1
    assert dict(report.errors) == {
        str(pics / "fifo.jpg"): "cannot read file: not a regular file (FIFO)",
        str(pics / "zero.jpg"): "cannot read file: not a regular file (character device)",
    }


# -- terminal escapes (item 12) -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("evil\x1b[2J.jpg", "evil\\x1b[2J.jpg"),
    ("over\rwrite.jpg", "over\\rwrite.jpg"),
    ("two\nlines.jpg", "two\\nlines.jpg"),
    ("bell\x07.jpg", "bell\\x07.jpg"),
    ("csi\x9b31m.jpg", "csi\\x9b31m.jpg"),
    ("\u202egnp.jpg", "\\u202egnp.jpg"),
    ("line\u2028sep.jpg", "line\\u2028sep.jpg"),
    (os.fsdecode(b"caf\xe9.jpg"), "caf\\xe9.jpg"),
    (b"caf\xe9.jpg", "caf\\xe9.jpg"),
    ("plain name (1).jpg", "plain name (1).jpg"),
    ("été 日本\u3000写真 👨\u200d👩\u200d👧.jpg", "été 日本\u3000写真 👨\u200d👩\u200d👧.jpg"),
])
def test_printable_escapes_what_acts_on_a_terminal(raw: str | bytes, shown: str) -> None:
    from glimpse.display import printable

    assert printable(raw) == shown


def test_cli_prints_hostile_names_escaped(tmp_path: Path, tiny_clip: Path) -> None:
    from typer.testing import CliRunner

    from glimpse.cli import app

    pics = tmp_path / "pics"
    pics.mkdir()
    png_file(pics / "good.png", (64, 48))
    (pics / "evil\x1b]0;owned\x07\r[red]x\n.jpg").write_text("not an image")
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "index", str(pics)])
    assert result.exit_code == 0, result.output
    for output in (result.stderr, runner.invoke(app, [*base, "status"]).stdout):
        assert "\x1b" not in output and "\r" not in output and "\x07" not in output
        assert "evil\\x1b]0;owned\\x07\\r[red]x\\n.jpg" in output  # shown as it is, markup not applied
    listed = runner.invoke(app, [*base, "search", "anything", "-k", "5"]).stdout
    assert "\x1b" not in listed
