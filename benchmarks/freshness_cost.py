"""What the one freshness rule (``Library.vectors``) costs over reading the stored vectors blindly.

Before [K], ``dupes --level semantic`` (and ``tags``) read every stored vector of the library without looking
at the files (``catalog.embeddings`` + ``files_by_id``: the *baseline*); ``Library.vectors()`` also stats every
file and hashes those whose size or mtime changed, so a changed file is never answered with a stale vector.
A library of N real files (random bytes: an unchanged file is never decoded, so its content does not matter)
with synthetic 512-d vectors; each figure is the median of ``--rounds`` runs with the files in the page
cache. ``touched`` is the same with ``--touched`` of the files given a new mtime (same content: hashed, then
served from the store, nothing encoded).

    python benchmarks/freshness_cost.py --n 20000 --touched 0.01 --work /tmp/glimpse-freshness
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from glimpse.catalog import STATE_OK, FileUpdate
from glimpse.library import Library
from glimpse.vectors.synthetic import clustered_embeddings


def build(work: Path, n: int) -> Library:
    """A library of ``n`` files under ``work/files`` whose catalog rows match them (made once, reused)."""
    from tiny_models import make_tiny_clip

    model = work / "model"
    if not model.exists():
        make_tiny_clip(model, projection_dim=512)
    lib = Library(work / "library", str(model))
    key, dim = lib.spec.key, lib.spec.dim
    if lib.catalog.count_embeddings(key) == n:
        return lib
    files = work / "files"
    files.mkdir(parents=True, exist_ok=True)
    lib.catalog.register_model(key, lib.spec.name, dim, lib.spec.to_dict())
    rng = np.random.default_rng(0)
    for start in range(0, n, 5000):
        updates = []
        for i, vector in enumerate(clustered_embeddings(min(5000, n - start), dim, seed=start)):
            path = files / f"{start + i:07d}.jpg"
            data = rng.bytes(int(rng.integers(20_000, 60_000)))
            path.write_bytes(data)
            st = path.stat()
            updates.append(FileUpdate(str(path), st.st_size, st.st_mtime_ns, STATE_OK,
                                      hashlib.blake2b(data, digest_size=16).hexdigest(), width=64, height=48,
                                      format="JPEG", vector=vector))
        lib.catalog.apply(updates, key)
    return lib


def baseline(lib: Library) -> int:
    ids, _vectors = lib.catalog.embeddings(lib.spec.key)
    return len(lib.catalog.files_by_id(ids.tolist()))


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--touched", type=float, default=0.01, help="fraction of files given a new mtime")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-freshness"))
    args = parser.parse_args()
    lib = build(args.work, args.n)
    base_ms = timed(lambda: baseline(lib), args.rounds)
    fresh_ms = timed(lambda: lib.vectors(), args.rounds)
    found = lib.vectors()
    assert found.stored == args.n and found.encoded == 0
    records = lib.indexed_files()
    touched = records[:: max(1, round(1 / args.touched))] if args.touched > 0 else []
    for rec in touched:
        os.utime(rec.path, ns=(rec.mtime_ns + 1_000_000_000, rec.mtime_ns + 1_000_000_000))
    touched_ms = timed(lambda: lib.vectors(), args.rounds)
    found = lib.vectors()
    assert found.stored == args.n and found.encoded == 0  # touched, not changed: served from the store
    for rec in touched:
        os.utime(rec.path, ns=(rec.mtime_ns, rec.mtime_ns))
    with open("/proc/cpuinfo", encoding="ascii") as fh:
        flags = sorted({f for line in fh if line.startswith("flags") for f in line.split()[2:]}
                       & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"})
    print(json.dumps({"n": args.n, "baseline_ms": round(base_ms, 1), "vectors_ms": round(fresh_ms, 1),
                      "ratio": round(fresh_ms / base_ms, 2), "touched_files": len(touched),
                      "touched_ms": round(touched_ms, 1), "touched_ratio": round(touched_ms / base_ms, 2),
                      "cpu_flags": flags, "cores": os.cpu_count()}, indent=2))
    lib.close()


if __name__ == "__main__":
    main()
