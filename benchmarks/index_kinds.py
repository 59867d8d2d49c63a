"""Which IVF kind serves text queries fastest at a recall target: list counts and coarse quantizers compared.

For each factory: train (``select.train``, 64 samples per list) and fill an index with ``--n`` CLIP-like
synthetic 512-d vectors, then for each ``nprobe`` measure recall@10 against exact search for held-out
image-like queries, unseen text queries and the library's tuning prompts (both embedded by the B/32-shaped
text tower, as in ``index_scale.py``), and single-query search p50 on the text queries with one thread
(what glimpse does) and with two threads splitting one query's lists (``parallel_mode=1``).

    python benchmarks/index_kinds.py --n 1000000 --kind "IVF1024,SQ8:128,192,256" \\
        --kind "IVF4096_HNSW32,SQ8:512,768,1024"

``--mmap`` loads the saved index memory-mapped, as a search process does. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_scale import b32_text_queries


def p50_ms(search, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q[None, :])
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.percentile(times, 50)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--kind", action="append", required=True, help='"FACTORY:nprobe,nprobe,..."')
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "glimpse-b32-shaped")
    parser.add_argument("--mmap", action="store_true", help="Search the saved index memory-mapped.")
    args = parser.parse_args()

    import faiss

    from glimpse.vectors import select
    from glimpse.vectors.faiss import FaissIndex
    from glimpse.vectors.synthetic import clustered_embeddings

    _, texts, probes = b32_text_queries(args.model_dir)
    data = clustered_embeddings(args.n + 200, 512, seed=0)  # the same vectors as index_scale.py
    vectors, held = data[: args.n], data[args.n :]
    ids = np.arange(args.n, dtype=np.int64)
    sets = {"image": held, "text": texts, "prompts": probes}
    truth = {name: faiss.knn(q, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)[1] for name, q in sets.items()}
    for spec in args.kind:
        factory, _, nprobes = spec.rpartition(":")
        with tempfile.TemporaryDirectory(prefix="glimpse-kinds-") as work:
            index = FaissIndex(Path(work), "kinds", 512, factory)
            started = time.perf_counter()
            sample = select.train(index, vectors)
            trained = time.perf_counter()
            index.upsert(ids, vectors)
            added = time.perf_counter()
            if args.mmap:
                index.save()
                index = FaissIndex.load(Path(work), "kinds", 512, mmap=True)
            ivf = faiss.extract_index_ivf(index.native)
            for nprobe in (int(p) for p in nprobes.split(",")):
                params = f"nprobe={nprobe}"
                if "HNSW" in factory:  # as select.tune sets it
                    params += f",quantizer_efSearch={max(2 * nprobe, 64)}"
                index.set_search_params(params)
                recall = {name: round(select.recall_at_k(np.stack([r.ids for r in index.search(q, 10)]),
                                                         truth[name]), 3) for name, q in sets.items()}
                one = p50_ms(lambda q, index=index: index.search(q, 10), texts[:100])  # FaissIndex: 1 thread/query
                threads = faiss.omp_get_max_threads()
                faiss.omp_set_num_threads(2)
                ivf.parallel_mode = 1
                two = p50_ms(lambda q, index=index: index.native.search(q, 10), texts[:100])
                ivf.parallel_mode = 0
                faiss.omp_set_num_threads(threads)
                print(json.dumps({"n": args.n, "factory": factory, "mmap": args.mmap, "train_sample": sample,
                                  "train_s": round(trained - started, 1), "add_s": round(added - trained, 1),
                                  "params": params, "recall_at_10": recall, "p50_ms_1_thread": one,
                                  "p50_ms_2_threads_parallel_lists": two}), flush=True)


if __name__ == "__main__":
    main()
