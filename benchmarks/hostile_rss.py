"""Peak RSS of each hostile file through each decode path, one fresh subprocess per (file, path).

Paths: ``index`` (``pipeline.prepare``: safe open, sniff, hash, decode, preprocess, as a worker thread does),
``upload`` (the server's: the bytes in memory, ``decode_image`` + ``preprocess_batch``), ``thumb``
(``ThumbnailCache.get``). The preprocessing is CLIP B/32's (shortest edge 224 + 224² crop) or, with
``--squash``, SigLIP's (224×224 squash). Each child imports glimpse, resets its peak RSS (Linux
``/proc/self/clear_refs``), runs the path once and reports its peak (``VmHWM``; ``ru_maxrss`` would carry
the parent's peak across fork); ``delta`` is the peak above the imported baseline. A child that does not finish in
``--timeout`` seconds is reported as hung. The goal (issue [J]): ≤ 300 MB peak for any file ≤ 1 MB, ≤ 1 GB
for any file under 100 MB.

    python benchmarks/hostile_rss.py [--squash] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys
from glimpse.images import decode_image
from glimpse.pipeline import Task, prepare
from glimpse.preprocess import preprocess_batch
from glimpse.server.thumbs import ThumbnailCache
from glimpse.catalog import FileRecord
from glimpse.spec import Preprocess
from glimpse.errors import ImageError
import os

path, how, squash = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
pre = Preprocess(224, 224, resize="squash", crop=False) if squash else Preprocess(224, 224, shortest_edge=224)
def status_mb(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) // 1024

with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak (VmHWM) to the current RSS: the imports' transient peak is not counted
base = status_mb("VmRSS")
outcome = "ok"
try:
    if how == "index":
        st = os.stat(path)
        update = prepare(Task(path, st.st_size, st.st_mtime_ns, None), pre).update
        outcome = update.state + (f": {update.error}" if update.error else "")
    elif how == "upload":
        with open(path, "rb") as fh:
            data = fh.read(20_000_000 + 1)  # the server's default upload limit
        if len(data) > 20_000_000:
            outcome = "refused: over the 20 MB upload limit"
        else:
            preprocess_batch([decode_image(data, min_side=pre.min_side).image], pre)
    else:
        import tempfile
        cache = ThumbnailCache(tempfile.mkdtemp())
        rec = FileRecord(id=1, path=path, size=0, mtime_ns=0, hash="ab", state="ok", width=None, height=None,
                         format=None, error=None)
        cache.get(rec, path)
except ImageError as exc:
    outcome = f"error: {exc}"
print(json.dumps({"base_mb": base, "peak_mb": status_mb("VmHWM"), "outcome": outcome[:110]}))
"""


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, 200 if mode == "L" else (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(size: tuple[int, int]) -> bytes:
    import numpy as np
    from PIL import Image

    base = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _sparse(path: Path, head: bytes, size: int) -> None:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)


def build(folder: Path) -> dict[str, Path]:
    """The hostile files (sparse where big, so they cost no disk)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hostile import png_header_only

    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    put("line_10000x1.png", _png((10_000, 1)))
    put("line_100000x1.png", _png((100_000, 1)))
    put("line_1x100000.png", _png((1, 100_000)))
    put("line_1x10000000.png", _png((1, 10_000_000)))
    put("line_10000000x1.png", _png((10_000_000, 1)))
    put("solid_100MP_rgb.png", _png((10_000, 10_000)))
    put("solid_100MP_grey.png", _png((10_000, 10_000), "L"))
    put("bomb_header_30000x30000.png", png_header_only(30_000, 30_000))
    put("photo_12MP.jpg", _jpeg((4000, 3000)))
    for name, head, size in [("zeros_1GB.jpg", b"", 2**30), ("text_1GB.jpg", b"Shopping list\n" * 40, 2**30),
                             ("png_head_then_99MB.png", _png((8, 8)), 99 * 10**6),
                             ("png_head_then_1GB.png", _png((8, 8)), 2**30)]:
        files[name] = folder / name
        _sparse(files[name], head, size)
    files["fifo.jpg"] = folder / "fifo.jpg"
    os.mkfifo(files["fifo.jpg"])
    files["dev_zero_link.jpg"] = folder / "dev_zero_link.jpg"
    os.symlink("/dev/zero", files["dev_zero_link.jpg"])
    return files


def measure(path: Path, how: str, squash: bool, timeout: float) -> dict[str, object]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), how, "1" if squash else "0"], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"outcome": f"HUNG (> {timeout:g} s)"}
    if done.returncode != 0:
        return {"outcome": f"CRASHED rc={done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squash", action="store_true", help="SigLIP-style 224×224 squash instead of CLIP's crop")
    parser.add_argument("--only", nargs="*", default=None, help="file names to measure")
    parser.add_argument("--paths", nargs="*", default=["index", "upload", "thumb"])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = build(Path(tmp))
        for name, path in files.items():
            if args.only and name not in args.only:
                continue
            size = os.lstat(path).st_size if path.is_file() else 0
            for how in args.paths:
                if how == "upload" and not path.is_file():
                    continue  # an upload is bytes: the benchmark itself would have to read the FIFO
                row = {"file": name, "bytes": size, "path": how, **measure(path, how, args.squash, args.timeout)}
                if "peak_mb" in row:
                    row["delta_mb"] = row["peak_mb"] - row["base_mb"]  # type: ignore[operator]
                print(json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
