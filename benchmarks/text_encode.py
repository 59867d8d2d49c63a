"""Text encode of one query with an immich-format B/32: the fixed [1, 77] graph vs its cut copy, one process.

    PYTHONPATH=src:tests python benchmarks/text_encode.py [--work DIR] [--rounds 5]

Model: the B/32-shaped random CLIP in immich's layout that ``benchmarks/cold_search.py`` builds (text graph
``int32[1, 77]``, weights inline). Both sessions are built the way glimpse builds them (``make_session``: the
mapped copy, all threads): ``full_77`` feeds every query padded to 77 tokens (immich's rule, what glimpse did
before), ``cut`` is the encoder as it runs now (``glimpse.encoders.shorten``: only the query's real tokens).
Each round times ``glimpse.bench.QUERIES`` one at a time with each, alternating; medians over all. Also
reports the largest difference between the two vectors of each query (they must be the same). Goal of issue
[G]: <= 10 ms per query on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cold_search import COMMIT, DEFAULT_REPO, cpu_flags, default_cache  # noqa: E402 - the path is set above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-cold-search"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from tiny_models import make_clip_b32_shaped

    if not (args.work / "b32" / "model.safetensors").exists():
        make_clip_b32_shaped(args.work / "b32")
    snapshot = default_cache(args.work) / ("models--" + DEFAULT_REPO.replace("/", "--")) / "snapshots" / COMMIT

    from glimpse.bench import QUERIES
    from glimpse.encoders.onnx import make_session
    from glimpse.registry import load_encoder

    encoder = load_encoder(str(snapshot))
    encoder.encode_texts(["warm up"])  # makes (first run) or loads the cut copy
    encoder.encode_texts(["warm up"])  # the second use packs the session (on a thread): wait for it
    if encoder._packer is not None:
        encoder._packer.join()
    full = make_session(encoder.files["textual"])
    tokenizer = encoder.tokenizer

    def full_77(query: str) -> np.ndarray:
        ids = tokenizer.encode(encoder.prepare_texts([query], None)).input_ids.astype(np.int32)
        out = full.run(None, {"text": ids})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    full_77("warm up")
    times: dict[str, list[float]] = {"full_77": [], "cut": []}
    diff = 0.0
    for _ in range(args.rounds):
        for query in QUERIES:
            start = time.perf_counter()
            want = full_77(query)
            times["full_77"].append(time.perf_counter() - start)
            start = time.perf_counter()
            got = encoder.encode_texts([query])
            times["cut"].append(time.perf_counter() - start)
            diff = max(diff, float(np.abs(want - got).max()))
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_flags(),
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "cut_in_use": bool(encoder._cut),
        "tokens": [len(tokenizer.ids(q)) for q in QUERIES],
        "full_77_ms": medians["full_77"],
        "cut_ms": medians["cut"],
        "speedup": medians["full_77"] / medians["cut"],
        "max_abs_diff": diff,
        "goal_ms": 10,
    }, indent=2))


if __name__ == "__main__":
    main()
