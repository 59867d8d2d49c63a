"""Index-scale measurements: build time, size, single-query latency and recall@10 of the chosen ANN index
against an exact flat index and an rclip-style numpy brute force, on CLIP-like synthetic vectors.

Used by ``glimpse bench-scale`` and ``benchmarks/index_scale.py``. The serving figures (resident memory,
latency including text encoding) come from a fresh subprocess that loads the saved index the way a
search process does (``python -m glimpse.vectors.bench_scale serve ...``), so they are not inflated by
the benchmark's own copies of the data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.vectors import select
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.synthetic import clustered_embeddings

KEY = "bench-scale"
QUERIES_TEXT = ["a dog on the beach", "red sports car at night", "bowl of ramen", "snowy mountain lake",
                "a child playing football", "old map of europe", "cat sleeping on a sofa", "city skyline"]


@dataclass
class ScaleResult:
    """One method at one collection size. Times in seconds/milliseconds, sizes in bytes."""

    n: int
    method: str
    factory: str
    build_s: float
    index_bytes: int
    p50_ms: float
    p99_ms: float
    recall_at_10: float
    params: str = ""
    #: recall@10 on caller-given query vectors (e.g. real text embeddings), NaN when none were given
    recall_queries_at_10: float = float("nan")
    serving: dict[str, Any] = field(default_factory=dict)
    #: serving runs per model (first: ``serving``), each with the index as a search process loads it
    #: (``"mmap"``: memory-mapped when big) and, for a memory-mapped one, read into RAM (``"read"``)
    serving_by_model: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
           ) -> tuple[float, float, list[np.ndarray]]:
    """p50 and p99 milliseconds of one query at a time, and each query's result ids."""
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q[None, :]))
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), found


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    rows = np.stack([np.pad(f[:10], (0, 10 - len(f[:10])), constant_values=-1) for f in found])
    return select.recall_at_k(rows, truth)


def numpy_topk(vectors: np.ndarray, q: np.ndarray, k: int = 10) -> np.ndarray:
    """rclip-style brute force: one matrix-vector product, argpartition, sort the top ``k``."""
    scores = vectors @ q.ravel()
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure(n: int, *, dim: int = 512, queries: int = 200, recall_target: float = 0.95,
            methods: tuple[str, ...] = ("ann", "flat", "numpy"), memory_budget: int | None = None,
            model: str | Sequence[str] | None = None, work_dir: str | None = None, seed: int = 0,
            extra_queries: np.ndarray | None = None, flat_limit: int = select.FLAT_LIMIT,
            text_probes: np.ndarray | None = None) -> list[ScaleResult]:
    """Measure each method on ``n`` synthetic vectors; ``model`` (a glimpse model, or several) adds a
    serving run of the ANN index per model that encodes each query text with it. Held-out queries are never indexed.
    ``extra_queries`` float32[q, dim]: more queries (real text embeddings) whose recall is reported too.
    ``text_probes`` float32[p, dim]: embedded generic prompts (``vectors.text_probes``) the ANN index is
    tuned for as well, as a library does; keep them distinct from ``extra_queries`` so recall is measured
    on texts the tuner never saw."""
    data = clustered_embeddings(n + queries, dim, seed=seed)
    vectors, held_out = data[:n], data[n:]
    del data
    ids = np.arange(n, dtype=np.int64)
    import faiss

    _, truth_rows = faiss.knn(held_out, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[truth_rows]
    extra_truth = None
    if extra_queries is not None:
        extra_queries = np.ascontiguousarray(extra_queries, dtype=np.float32)
        extra_truth = ids[faiss.knn(extra_queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]]
    results: list[ScaleResult] = []
    work = Path(work_dir or tempfile.mkdtemp(prefix="glimpse-bench-scale-"))
    try:
        for method in methods:
            if method == "numpy":
                p50, p99, found = _timed(lambda q: numpy_topk(vectors, q), held_out)
                results.append(ScaleResult(n, "numpy brute force", "-", 0.0, vectors.nbytes, p50, p99,
                                           _recall(found, truth)))
                continue
            started = time.perf_counter()
            if method == "flat":
                index = FaissIndex(work, KEY, dim, "Flat")
                index.upsert(ids, vectors)
            else:
                factory = select.choose_factory(n, dim, memory_budget, flat_limit=flat_limit).factory
                index = FaissIndex(work, KEY, dim, factory)
                policy = select.IndexPolicy(recall_target=recall_target, flat_limit=flat_limit)
                select.build(index, ids, vectors, policy, None if text_probes is None else lambda: text_probes)
            build_s = time.perf_counter() - started
            p50, p99, found = _timed(lambda q, index=index: index.search(q, 10)[0].ids, held_out)
            index.save()
            result = ScaleResult(n, "faiss " + ("exact" if method == "flat" else "ann"), index.factory, build_s,
                                 index.index_path.stat().st_size, p50, p99, _recall(found, truth), index.search_params)
            if extra_truth is not None:
                result.recall_queries_at_10 = _recall([r.ids for r in index.search(extra_queries, 10)], extra_truth)
            for served in ([] if method == "flat" or not model else [model] if isinstance(model, str) else model):
                runs = {"mmap": serve_in_subprocess(work, dim, served)}
                if runs["mmap"].get("mmap"):
                    runs["read"] = serve_in_subprocess(work, dim, served, mmap=False)
                result.serving = result.serving or runs["mmap"]
                result.serving_by_model[served] = runs
            results.append(result)
            del index
    finally:
        if work_dir is None:  # ours: the saved indexes can be GBs
            shutil.rmtree(work, ignore_errors=True)
    return results


def serve_in_subprocess(directory: Path, dim: int, model: str, rounds: int = 100, *, mmap: bool = True
                        ) -> dict[str, Any]:
    """Resident memory and per-query latency of a fresh search process (text encoding included).
    ``mmap``: load the index as a search process does (memory-mapped when big), else read it into RAM."""
    out = subprocess.run([sys.executable, "-m", "glimpse.vectors.bench_scale", "serve", str(directory), str(dim),
                          model, str(rounds), "mmap" if mmap else "read"], capture_output=True, text=True, check=False,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_peak() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _serve(directory: str, dim: int, model: str, rounds: int, mmap: bool = True) -> dict[str, Any]:
    from glimpse.registry import load_encoder

    index = FaissIndex.load(Path(directory), KEY, dim, mmap=mmap)
    if index is None:
        raise SystemExit(f"no index in {directory}")
    encoder = load_encoder(model)
    if encoder.dim != dim:
        raise SystemExit(f"{model} gives {encoder.dim}-d vectors, the index holds {dim}-d ones")
    encode_ms, search_ms, total_ms = [], [], []
    for i in range(rounds + 5):
        text = QUERIES_TEXT[i % len(QUERIES_TEXT)] + f" {i}"
        t0 = time.perf_counter()
        q = encoder.encode_texts([text])
        t1 = time.perf_counter()
        index.search(q, 10)
        t2 = time.perf_counter()
        if i >= 5:  # warm-up rounds excluded
            encode_ms.append((t1 - t0) * 1000)
            search_ms.append((t2 - t1) * 1000)
            total_ms.append((t2 - t0) * 1000)
    pct = lambda xs, p: round(float(np.percentile(xs, p)), 3)  # noqa: E731
    return {"rss_peak_bytes": _rss_peak(), "encode_p50_ms": pct(encode_ms, 50), "search_p50_ms": pct(search_ms, 50),
            "total_p50_ms": pct(total_ms, 50), "total_p99_ms": pct(total_ms, 99), "mmap": index.mapped,
            "encoder": type(encoder).__name__}


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "serve":
    print(json.dumps(_serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "mmap")))
