"""What checking the vector index on open costs a search process (``vectors.index_problem`` + checksum).

For each size, a catalog of CLIP-like synthetic vectors (``vectors.synthetic``) and its index as ``glimpse
index`` saves it (``auto`` policy: ``Flat`` at 10k, ``IVF1024,SQ8`` at 1M), then, each the median of
``--rounds`` runs with the file in the page cache (as for a repeated ``glimpse search``):

* ``load_ms``: ``FaissIndex.load`` as a reader does (memory-mapped from 256 MB on), checksum included where
  the file is read fully (``faiss_read_ms``: a bare ``faiss.read_index`` of that file, for comparison);
  ``checksum_ms``: that checksum alone (a writer pays it at every size); ``*_cpu_ms``: CPU time of the same;
* ``problem_ms``: ``index_problem`` (catalog id, change id, 16 sampled catalog vectors reconstructed and
  compared, 2 one-list searches whose scores must be cosines); on a machine shared with other work the wall
  times are mostly waiting, the CPU times are what the check costs;
* ``rss_delta_mb``: resident memory the check added (the mapped index is not read to check it);
* ``open_ms`` / ``open_cpu_ms``: all of what a search process does before searching, ``open_index(save=False)``
  (load, check, catch up, count), against a read-only catalog.

    python benchmarks/index_integrity.py --sizes 10000 1000000 --work /tmp/glimpse-integrity
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from glimpse.catalog import STATE_OK, Catalog, FileUpdate
from glimpse.vectors.faiss import FaissIndex, file_checksum
from glimpse.vectors.sync import index_problem, open_index
from glimpse.vectors.synthetic import clustered_embeddings

KEY = "bench-integrity"
DIM = 512
BATCH = 10_000


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def library(work: Path, n: int) -> tuple[Catalog, Path]:
    """A catalog of ``n`` vectors and its saved index under ``work/<n>`` (made once, reused)."""
    root = work / str(n)
    root.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(root / "catalog.sqlite3")
    if catalog.count_embeddings(KEY) != n:
        catalog.register_model(KEY, "synthetic", DIM, {})
        catalog.vector_dtype = "float16"  # half the catalog at 1M; the index is built from what is stored
        for start in range(0, n, BATCH):
            vectors = clustered_embeddings(min(BATCH, n - start), DIM, seed=start)
            catalog.apply([FileUpdate(f"/synthetic/{start + i:07d}.jpg", 1, 1, STATE_OK, hash=f"{start + i:x}",
                                      vector=v) for i, v in enumerate(vectors)], KEY)
        open_index(root / "index", catalog, KEY, DIM)
    return catalog, root / "index"


def measure(work: Path, n: int, rounds: int) -> dict[str, object]:
    catalog, directory = library(work, n)
    read_ms, load_ms, checksum_ms, problem_ms, rss = [], [], [], [], []
    load_cpu_ms, checksum_cpu_ms, problem_cpu_ms = [], [], []
    path = FaissIndex(directory, KEY, DIM).index_path
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        index = FaissIndex.load(directory, KEY, DIM, mmap=True)
        t1 = time.perf_counter()
        load_cpu_ms.append((time.process_time() - c0) * 1000)
        before, cpu = _rss_mb(), time.process_time()
        problem = index_problem(index, catalog)
        t2 = time.perf_counter()
        problem_cpu_ms.append((time.process_time() - cpu) * 1000)
        rss.append(_rss_mb() - before)
        assert problem is None, problem
        c2 = time.process_time()
        file_checksum(path)
        t3 = time.perf_counter()
        checksum_cpu_ms.append((time.process_time() - c2) * 1000)
        if not index._mapped:  # the bare faiss read of the same file, for comparison
            faiss.read_index(str(path))
            read_ms.append((time.perf_counter() - t3) * 1000)
        load_ms.append((t1 - t0) * 1000)
        problem_ms.append((t2 - t1) * 1000)
        checksum_ms.append((t3 - t2) * 1000)
        del index
    catalog.close()
    reader = Catalog(directory.parent / "catalog.sqlite3", readonly=True)
    open_ms, open_cpu_ms = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        open_index(directory, reader, KEY, DIM, save=False)
        open_ms.append((time.perf_counter() - t0) * 1000)
        open_cpu_ms.append((time.process_time() - c0) * 1000)
    reader.close()
    med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
    loaded = FaissIndex.load(directory, KEY, DIM, mmap=True)
    return {"n": n, "factory": loaded.factory, "mapped": loaded._mapped, "index_mb": round(path.stat().st_size / 2**20),
            "load_ms": med(load_ms), "load_cpu_ms": med(load_cpu_ms),
            "faiss_read_ms": med(read_ms) if read_ms else None,
            "checksum_ms": med(checksum_ms), "checksum_cpu_ms": med(checksum_cpu_ms), "problem_ms": med(problem_ms),
            "problem_cpu_ms": med(problem_cpu_ms), "open_ms": med(open_ms), "open_cpu_ms": med(open_cpu_ms),
            "rss_delta_mb": round(float(np.max(rss)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-integrity"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for n in args.sizes:
        print(json.dumps(measure(args.work, n, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
