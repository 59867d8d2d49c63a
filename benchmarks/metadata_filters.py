"""Capture-metadata filters on a large library: filtered search p50 against unfiltered (issue 14 [I]: ≤ 2×).

A library of N items (default 100,000) with synthetic 512-d vectors (``vectors.synthetic.clustered_embeddings``)
and capture metadata spread like a phone library's: dates over 2015–2025, five cameras (one in three an
iPhone), GPS on 70% of photos around a few cities. Files are catalog rows only (search never opens them). Each
row is the median (and p90) over ``--queries`` random query vectors of ``Library.search_vector`` at k=20 with the
FAISS store, the unfiltered search first: the filters cover a month (~0.8% of items), a year (~9%), a camera
(~33%), a 20 km radius (~6%), and a month + camera.

    python benchmarks/metadata_filters.py --n 100000 --queries 50 --work /tmp/glimpse-metafilters
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from glimpse.catalog import STATE_OK, FileUpdate
from glimpse.library import Library
from glimpse.metadata import TAKEN_EXIF, PhotoMetadata
from glimpse.metafilter import MetadataFilter
from glimpse.vectors.synthetic import clustered_embeddings

CAMERAS = [("Apple", "iPhone 13"), ("Apple", "iPhone 15 Pro"), ("Google", "Pixel 8"), ("Canon", "Canon EOS R5"),
           ("SONY", "ILCE-7M4"), ("samsung", "SM-S918B")]
CITIES = [(48.8566, 2.3522), (51.5074, -0.1278), (40.7128, -74.0060), (35.6762, 139.6503), (-33.8688, 151.2093)]
FILTERS = {
    "a month (2021-06)": {"after": "2021-06", "before": "2021-07"},
    "a year (2019)": {"after": "2019", "before": "2020"},
    "a camera (iphone)": {"camera": "iphone"},
    "20 km around Paris": {"near": "48.8566,2.3522,20km"},
    "a month + a camera": {"after": "2021-06", "before": "2021-07", "camera": "canon"},
}


def build(work: Path, n: int) -> Library:
    from tiny_models import make_tiny_clip

    model = work / "model"
    if not model.exists():
        make_tiny_clip(model, projection_dim=512)
    lib = Library(work / "library", str(model))
    key, dim = lib.spec.key, lib.spec.dim
    if lib.catalog.count_embeddings(key) == n:
        return lib
    lib.catalog.register_model(key, lib.spec.name, dim, lib.spec.to_dict())
    rng = np.random.default_rng(0)
    start_day = np.datetime64("2015-01-01")
    for start in range(0, n, 5000):
        count = min(5000, n - start)
        updates = [FileUpdate(f"/photos/{start + i:07d}.jpg", 1000, 1, STATE_OK, f"{start + i:032x}", width=64,
                              height=48, format="JPEG", vector=vector)
                   for i, vector in enumerate(clustered_embeddings(count, dim, seed=start))]
        ids = lib.catalog.apply(updates, key)
        rows = []
        for file_id, update in zip(ids, updates, strict=True):
            day = start_day + np.timedelta64(int(rng.integers(0, 11 * 365)), "D")
            taken = f"{day}T{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:00"
            make, model_name = CAMERAS[int(rng.integers(0, len(CAMERAS)))] if rng.random() > 0.1 else (None, None)
            lat = lon = None
            if rng.random() < 0.7:
                city = CITIES[int(rng.integers(0, len(CITIES)))]
                lat, lon = city[0] + rng.normal(0, 0.5), city[1] + rng.normal(0, 0.5)
            rows.append((file_id, update.hash, PhotoMetadata(taken, None, TAKEN_EXIF, lat, lon, make, model_name)))
        lib.catalog.put_metadata(rows)
    return lib


def timed(fn, queries: np.ndarray) -> tuple[float, float, int]:
    fn(queries[0])  # warm: the index is loaded, caches filled
    times, count = [], 0
    for q in queries:
        started = time.perf_counter()
        count = len(fn(q))
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.9)] * 1e3, count


def cpu_flags() -> list[str]:
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in line.split() if f.startswith(("avx2", "avx512f", "avx512_vnni", "amx")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-metafilters"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lib = build(args.work, args.n)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(args.queries, lib.spec.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    base_p50, base_p90, _ = timed(lambda q: lib.search_vector(q, 20), queries)
    rows = {"unfiltered": {"p50_ms": round(base_p50, 2), "p90_ms": round(base_p90, 2), "ratio": 1.0}}
    for name, bounds in FILTERS.items():
        where = MetadataFilter.parse(**bounds)
        matching = len(lib.catalog.ids_matching(where))
        p50, p90, hits = timed(lambda q, w=where: lib.search_vector(q, 20, where=w), queries)
        rows[name] = {"matching": matching, "share": round(matching / args.n, 4), "hits": hits,
                      "p50_ms": round(p50, 2), "p90_ms": round(p90, 2), "ratio": round(p50 / base_p50, 2)}
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "n": args.n, "queries": args.queries, "k": 20,
                      "store": "FAISS (the default kind for the size)", "cpu_flags": cpu_flags(),
                      "cores": os.cpu_count(), "load": round(os.getloadavg()[0], 2),
                      "machine": platform.machine(), "rows": rows}, indent=2))
    lib.close()


if __name__ == "__main__":
    main()
