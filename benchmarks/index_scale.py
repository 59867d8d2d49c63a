"""Index-scale benchmark: 10k / 100k / 1M CLIP-like 512-d vectors.

For each size: the ANN index glimpse chooses (tuned to recall@10 ≥ 0.95) against an exact FAISS flat
scan and an rclip-style numpy brute force, all measured in the same run: build time, index size,
p50/p99 single-query search latency, recall@10 vs exact on held-out synthetic queries and on real text
query vectors from a B/32-shaped CLIP text tower (random weights: the shapes and cost of
openai/clip-vit-base-patch32, not its semantics). A fresh search process then loads the saved ANN index
(memory-mapped when big) and the B/32-shaped model and answers text queries: its resident memory and
total latency (text encoding + search) are the "serving" figures.

    python benchmarks/index_scale.py --sizes 10000 100000 1000000 --out docs/benchmarks/index_scale.json

Writes JSON results and a plot (docs/index_scale.png). Needs the CLIP tokenizer test data and torch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def b32_text_queries(model_dir: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """Build the B/32-shaped checkpoint once; embed the benchmark's query texts (for recall) and the
    library's generic tuning prompts (``vectors.text_probes``, for nprobe) with it."""
    from glimpse.registry import load_encoder
    from glimpse.vectors.bench_scale import QUERIES_TEXT
    from glimpse.vectors.text_probes import probe_prompts, text_probe_vectors
    from tiny_models import make_clip_b32_shaped

    if not (model_dir / "config.json").exists():
        make_clip_b32_shaped(model_dir)
    encoder = load_encoder(str(model_dir))
    texts = [f"{t} {i}" for i in range(25) for t in QUERIES_TEXT]  # 200 distinct queries
    overlap = set(texts) & set(probe_prompts(encoder.spec.languages))
    if overlap:
        raise SystemExit(f"evaluation texts overlap the tuning prompts: {sorted(overlap)[:3]}")
    return str(model_dir), encoder.encode_texts(texts), text_probe_vectors(encoder)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, rec) = plt.subplots(1, 2, figsize=(11, 4))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in results)):
        rows = [r for r in results if r["method"] == method]
        ns = [r["n"] for r in rows]
        colour = f"C{i}"
        lat.plot(ns, [r["p50_ms"] for r in rows], marker="o", color=colour, label=f"{method} p50")
        lat.plot(ns, [r["p99_ms"] for r in rows], marker="x", linestyle="--", color=colour, label=f"{method} p99")
        rec.plot(ns, [r["recall_at_10"] for r in rows], marker="o", color=colour, label=f"{method} (image-like)")
        text = [r.get("recall_queries_at_10") for r in rows]
        if all(isinstance(t, float) and t == t for t in text):  # NaN for numpy, which is exact anyway
            rec.plot(ns, text, marker="s", linestyle=":", color=colour, label=f"{method} (text queries)")
    for ax in (lat, rec):
        ax.set_xscale("log")
        ax.set_xlabel("vectors (512-d)")
        ax.grid(True, alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel("single-query search latency (ms)")
    rec.set_ylabel("recall@10 vs exact")
    rec.set_ylim(0.8, 1.01)
    lat.legend(fontsize=7)
    rec.legend(fontsize=7)
    fig.suptitle("glimpse index scale, 2-core CPU: nprobe tuned for image and text queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "index_scale.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "index_scale.png")
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "glimpse-b32-shaped")
    parser.add_argument("--machine", default="2-core CPU, no GPU",
                        help="How the machine was loaded during the run, recorded in the JSON.")
    parser.add_argument("--serve-model", type=Path, nargs="+", default=None,
                        help="Models serving processes load (e.g. the ONNX and int8 ONNX exports of --model-dir).")
    parser.add_argument("--methods", nargs="+", default=["ann", "flat", "numpy"], choices=["ann", "flat", "numpy"])
    parser.add_argument("--no-text-tuning", action="store_true",
                        help="Tune nprobe on image-like held-out queries only (the behaviour before text probes).")
    parser.add_argument("--replot", action="store_true", help="Only redraw the plot from --out's JSON.")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text())["results"], args.plot)
        return

    from glimpse.vectors.bench_scale import measure

    model, text_queries, probes = b32_text_queries(args.model_dir)
    if args.serve_model:
        model = [str(m) for m in args.serve_model]
    results = []
    for n in args.sizes:
        # exact/numpy baselines at every size; the serving subprocess only for the ANN index
        tuning_probes = None if args.no_text_tuning else probes
        for r in measure(n, model=model, extra_queries=text_queries, text_probes=tuning_probes,
                         methods=tuple(args.methods)):
            row = r.to_dict()
            results.append(row)
            print(json.dumps(row), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "command": "python " + " ".join(sys.argv),
            "machine": args.machine,
            "date": dt.date.today().isoformat(),
            "results": results,
        }, indent=2) + "\n")
        plot(results, args.plot)


if __name__ == "__main__":
    main()
