"""The model-input resize: Pillow's whole resize + crop against glimpse.resample's crop-only C kernel.

    python benchmarks/resize_speed.py [--rounds 5] [--size 224] [--filter bicubic]

Photos: ../shared/data/coco128 (128 photos, about 640×480), decoded once; each is resized as CLIP preprocesses
it (shortest edge -> ``--size``, long edge truncated, center crop ``--size``²). Both ways run on the same
decoded images in one process, alternated ``--rounds`` times; the figure is the median per-photo CPU time
(``time.thread_time``) of each way, and their ratio. Every photo's two results are compared byte for byte
(the kernel must give Pillow's pixels): the count of equal photos is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    from glimpse import resample
    from glimpse.preprocess import crop_offset, resize_size
    from glimpse.spec import Preprocess
    from index_ceiling import cpu_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--filter", default="bicubic", choices=sorted(resample.PILLOW_FILTERS))
    args = parser.parse_args()
    folder = DATA / "coco128" / "images"
    if not folder.is_dir():
        sys.exit(f"{folder} not found: this benchmark needs ../shared/data (set GLIMPSE_TEST_DATA)")
    if resample.kernel_order() is None:
        sys.exit("glimpse._resample is not built (or does not match this Pillow): nothing to compare")
    pre = Preprocess(args.size, args.size, shortest_edge=args.size, interpolation=args.filter)
    jobs = []
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as im:
            image = im.convert("RGB")
        size = resize_size(*image.size, pre)
        left, top = crop_offset(size[0] - args.size), crop_offset(size[1] - args.size)
        jobs.append((image, size, (left, top, left + args.size, top + args.size)))
    filt = resample.PILLOW_FILTERS[args.filter]

    def pillow(job: tuple) -> np.ndarray:
        image, size, (left, top, right, bottom) = job
        return np.asarray(image.resize(size, resample=filt))[top:bottom, left:right]

    def kernel(job: tuple) -> np.ndarray:
        image, size, box = job
        return resample.resize_crop(image, size, box, args.filter)

    equal = sum(np.array_equal(pillow(j), kernel(j)) for j in jobs)
    times: dict[str, list[float]] = {"pillow": [], "kernel": []}
    for _ in range(args.rounds):
        for name, fn in (("pillow", pillow), ("kernel", kernel)):
            start = time.thread_time()
            for job in jobs:
                fn(job)
            times[name].append((time.thread_time() - start) / len(jobs) * 1e3)
    pillow_ms, kernel_ms = statistics.median(times["pillow"]), statistics.median(times["kernel"])
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu_flags": cpu_flags(),
        "photos": len(jobs), "filter": args.filter, "size": args.size, "pass_order": resample.kernel_order(),
        "photos_equal": equal, "pillow_ms_per_photo": round(pillow_ms, 3), "kernel_ms_per_photo": round(kernel_ms, 3),
        "speedup": round(pillow_ms / kernel_ms, 2), "rounds": times,
    }, indent=1))


if __name__ == "__main__":
    main()
