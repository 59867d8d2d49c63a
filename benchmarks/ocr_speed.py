"""OCR throughput: glimpse's engine with each model of ``glimpse.ocr.models.OCR_MODELS`` vs rapidocr's defaults.

    python benchmarks/ocr_speed.py [--limit 48] [--models ppocrv4,ppocrv6-small@736] [--threads N] [--rounds 1]

Images: ../shared/data/coco128/images (ordinary ~640 px photos; most hold little or no text), the first
``--limit`` in name order, decoded to RGB before timing. Each engine runs in its own child process (so its
peak RSS is its own, ``ru_maxrss``): load, two warm-up images, then every image once per round, one after
another. The baseline is the ``rapidocr_onnxruntime`` package's own ``RapidOCR()`` with its defaults (its
PP-OCRv4 files, detector min side 736, classifier on), given the same images as BGR arrays.

Reported per engine: images/s (best round), lines found per image, load seconds, peak RSS; and the machine:
CPU flags that matter to onnxruntime (avx2 / avx512f / avx512_vnni), cores, the load average before and
after. One JSON object on stdout. Figures taken while other work runs are noisy: compare engines of the same
run (ratios), not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))
BASELINE = "rapidocr-defaults"


def _images(limit: int) -> list:
    from PIL import Image

    folder = DATA / "coco128" / "images"
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not files:
        raise SystemExit(f"no images under {folder}")
    out = []
    for path in files:
        with Image.open(path) as img:
            out.append(img.convert("RGB"))
    return out


def run_one(name: str, limit: int, threads: int | None, rounds: int) -> dict:
    """Load one engine in this process and time it on the images (called in a child process)."""
    images = _images(limit)
    start = time.perf_counter()
    if name == BASELINE:
        import numpy as np
        from rapidocr_onnxruntime import RapidOCR

        ocr = RapidOCR()
        inputs = [np.ascontiguousarray(np.asarray(img)[:, :, ::-1]) for img in images]  # RapidOCR takes BGR

        def read(x):
            result, _ = ocr(x)
            return result or []
    else:
        from glimpse.ocr.engine import open_ocr_engine

        model, _, min_side = name.partition("@")  # "ppocrv6-small@736": that model with det_min_side=736
        options = {"det_min_side": int(min_side)} if min_side else {}
        engine = open_ocr_engine(model, threads=threads, **options)
        inputs = images
        read = engine.read
    load_s = time.perf_counter() - start
    for x in inputs[:2]:
        read(x)
    best = 0.0
    lines = 0
    for _ in range(rounds):
        lines = 0
        start = time.perf_counter()
        for x in inputs:
            lines += len(read(x))
        best = max(best, len(inputs) / (time.perf_counter() - start))
    return {"engine": name, "images": len(inputs), "images_per_s": round(best, 3),
            "lines_per_image": round(lines / len(inputs), 2), "load_s": round(load_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in wanted if f in flags]


def main() -> None:
    from glimpse.ocr.models import OCR_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=48, help="images of coco128 to read")
    parser.add_argument("--models", default=",".join([*OCR_MODELS, BASELINE]),
                        help=f"comma-separated engines: model names (NAME@N: with det_min_side=N); "
                             f"{BASELINE!r} is rapidocr's own RapidOCR()")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for glimpse's engines")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.limit, args.threads, args.rounds)))
        return
    load_before = os.getloadavg()
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--limit", str(args.limit), "--rounds", str(args.rounds)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            rows.append({"engine": name, "error": done.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    base = next((r for r in rows if r["engine"] == BASELINE and "images_per_s" in r), None)
    if base:
        for row in rows:
            if "images_per_s" in row:
                row["x_baseline"] = round(row["images_per_s"] / base["images_per_s"], 2)
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_flags": cpu_flags(), "cores": len(os.sched_getaffinity(0)),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "images": str(DATA / "coco128" / "images"), "rows": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
