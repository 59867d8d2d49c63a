"""Perceptual duplicates on ../shared/data/dups: pairwise precision/recall against the ground truth in the
file names (``ukbenchNNNNN[_variant].ext`` is a copy of photo NNNNN), for glimpse's flip/rotation-tolerant
matching and, as the baseline measured in the same run, a plain pHash comparison (whole frame only).

    python benchmarks/dedup_ukbench.py [--threshold 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import time
from pathlib import Path

from glimpse.dedup import find_perceptual, hamming, image_hashes
from glimpse.errors import ImageError
from glimpse.images import open_image
from glimpse.pipeline import image_files

DUPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dups"


def truth_id(path: str) -> str:
    match = re.match(r"(ukbench\d+)", Path(path).name)
    return match.group(1) if match else Path(path).name  # non-ukbench files are their own photo


def score(predicted: set[frozenset[str]], files: list[str]) -> dict[str, float]:
    truth = {frozenset(p) for p in itertools.combinations(files, 2) if truth_id(p[0]) == truth_id(p[1])}
    hits = len(predicted & truth)
    return {"pairs_true": len(truth), "pairs_found": len(predicted), "precision": hits / max(1, len(predicted)),
            "recall": hits / max(1, len(truth))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=10)
    args = parser.parse_args()
    files = image_files([DUPS / "base_images", DUPS / "mixed_images", DUPS / "formats_images"])
    start = time.perf_counter()
    report = find_perceptual(files, args.threshold)
    seconds = time.perf_counter() - start
    pairs = set()
    for group in report.groups:
        members = [group.keep.path] + [d.path for d in group.duplicates]
        pairs |= {frozenset(p) for p in itertools.combinations(members, 2)}
    readable = [f for f in files if f not in {x["path"] for x in report.failed}]
    ours = score(pairs, readable)
    # Baseline: plain pHash of the whole frame, same threshold, transitive grouping not applied.
    hashes = {}
    for path in readable:
        try:
            hashes[path] = image_hashes(open_image(path, min_side=256).image).full
        except ImageError:
            continue
    plain = {frozenset((a, b)) for a, b in itertools.combinations(readable, 2)
             if hamming(hashes[a], hashes[b]) <= args.threshold}
    baseline = score(plain, readable)
    print(json.dumps({"images": len(readable), "failed": len(report.failed), "threshold": args.threshold,
                      "seconds": round(seconds, 2), "glimpse": ours, "baseline_plain_phash": baseline,
                      "recall_ratio": round(ours["recall"] / max(baseline["recall"], 1e-9), 2)}, indent=2))


if __name__ == "__main__":
    main()
