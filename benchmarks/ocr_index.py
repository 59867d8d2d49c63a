"""`index --ocr` end to end against the sum of its stages, and the thread layout of OCR, same images, same run.

Stages, each measured alone on the same photos:
(a) CLIP indexing: `Library.index` without OCR (decode + preprocess in the workers, encode, commit);
(b) OCR alone: the engine's `read` on images decoded beforehand (as `index --ocr` decodes them), from
    `workers` threads at once with `threads` onnxruntime intra-op threads per session.
Both stages need the same cores, so the best `index --ocr` can do is the harmonic sum
``limit = 1 / (1/a + 1/b)`` images/s; (c) `index --ocr` on a fresh library is reported as a ratio of it.
Layouts compared: 1 intra-op thread × one worker per core (the default `Library.index` uses) against all
cores' intra-op threads × 1 worker.

Model: a ViT-B/32-shaped CLIP with random weights (speed does not depend on the weights; needs the shared
CLIP tokenizer), torch backend. Images: the first ``--n`` photos of ../shared/data/coco128.

    python benchmarks/ocr_index.py [--n 48] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))


def ocr_alone(engine, images: list, workers: int) -> float:
    """Images/s of ``engine.read`` over decoded ``images`` from ``workers`` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(engine.read, images))
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=48, help="coco128 photos to use")
    parser.add_argument("--repeat", type=int, default=1, help="runs per layout, alternating (best kept)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    from glimpse.images import open_image
    from glimpse.library import Library
    from glimpse.ocr.engine import open_ocr_engine
    from glimpse.pipeline import OCR_MIN_SIDE
    from tiny_models import make_clip_b32_shaped

    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="glimpse-ocr-bench-"))
    model = make_clip_b32_shaped(Path(tempfile.gettempdir()) / "glimpse-bench-clip-b32")
    pics = work / "pics"
    pics.mkdir()
    for path in sorted((SHARED / "coco128" / "images").glob("*.jpg"))[: args.n]:
        shutil.copy(path, pics / path.name)
    files = sorted(pics.iterdir())
    decoded = [open_image(p, min_side=OCR_MIN_SIDE).image for p in files]
    layouts = {f"1 thread x {cores} workers": (1, cores), f"{cores} threads x 1 worker": (cores, 1)}
    results: dict = {"date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
                     "cores": cores, "images": len(files), "load_before": os.getloadavg()[0], "layouts": {}}

    warm = work / "warm"
    warm.mkdir()
    for path in files[:4]:
        shutil.copy(path, warm / path.name)
    with Library(work / "clip-only", str(model)) as lib:
        lib.index([warm], batch_size=32)  # warm-up: first session runs, caches
        start = time.perf_counter()
        report = lib.index([pics], batch_size=32)
        clip_rate = report.encoded / (time.perf_counter() - start)
    results["clip_images_per_s"] = round(clip_rate, 3)
    engines = {name: open_ocr_engine(threads=threads) for name, (threads, _) in layouts.items()}
    order = [name for _ in range(args.repeat) for name in (layouts if _ % 2 == 0 else reversed(layouts))]
    for run, name in enumerate(order):
        workers = layouts[name][1]
        engine = engines[name]
        engine.read(decoded[0])  # warm-up
        ocr_rate = ocr_alone(engine, decoded, workers)
        with Library(work / f"ocr-{run}", str(model), ocr_engine=engine) as lib:
            lib.index([warm], batch_size=32, workers=workers, ocr=True)  # model loaded before the clock starts
            start = time.perf_counter()
            report = lib.index([pics], batch_size=32, workers=workers, ocr=True)
            e2e = report.ocr_read / (time.perf_counter() - start)
        limit = 1 / (1 / clip_rate + 1 / ocr_rate)
        row = {"ocr_alone_images_per_s": round(ocr_rate, 3), "limit_images_per_s": round(limit, 3),
               "index_ocr_images_per_s": round(e2e, 3), "ratio_to_limit": round(e2e / limit, 3),
               "lines": report.ocr_lines, "load": round(os.getloadavg()[0], 2)}
        print(name, row, flush=True)
        best = results["layouts"].get(name)
        if best is None or row["index_ocr_images_per_s"] > best["index_ocr_images_per_s"]:
            results["layouts"][name] = row
    results["load_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
