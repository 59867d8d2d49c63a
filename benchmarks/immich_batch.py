"""Indexing throughput: an immich-format tower with a fixed batch of 1 vs the same tower with a dynamic batch.

    python benchmarks/immich_batch.py [--work DIR] [--rounds 2]

Model: a random ViT-B/32-shaped CLIP (tests/tiny_models.make_clip_b32_shaped) exported twice the way immich's
exporter writes it (tests/immich_fixtures.make_immich_model: ``visual/model.onnx`` image ``[1, 3, 224, 224]``,
``textual/model.onnx`` int32 ``[1, 77]``, fp32), once with the batch axis fixed at 1 as published and once with
it dynamic. Images: ../shared/data/coco128 (128 photos). Each round indexes them into a fresh library with each
model (``Library.index``, batch 32, in this process, alternating the order) and reports images/s; the ratio
static / dynamic of the median rounds is the figure (goal: >= 0.9). It also times the image encoder alone on
64 preprocessed images, to show why glimpse runs a batch-1 graph as it does: ``batch1_parallel`` (what glimpse
does: one single-threaded session, one image per core at once), ``batch1_intra_op`` (one image at a time,
onnxruntime's threads inside each run) and ``dynamic_batch32`` (the dynamic tower, batches of 32; since
2026-12-03 each batch runs as one piece per core, as glimpse runs it). One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))


def build(work: Path) -> dict[str, Path]:
    from immich_fixtures import make_immich_model
    from tiny_models import make_clip_b32_shaped

    source = work / "b32"
    if not (source / "config.json").is_file():
        make_clip_b32_shaped(source)
    out = {}
    for kind, dynamic in (("static", False), ("dynamic", True)):
        directory = work / f"ViT-B-32-{kind}__bench"
        if not (directory / "textual" / "model.onnx").is_file():
            make_immich_model(directory, "clip", dynamic=dynamic, source=source)
        out[kind] = directory
    return out


def index_once(model: Path, images: Path, library: Path) -> float:
    import glimpse

    shutil.rmtree(library, ignore_errors=True)
    with glimpse.open_library(library, model=str(model)) as lib:
        start = time.perf_counter()
        report = lib.index([str(images)], batch_size=32)
        seconds = time.perf_counter() - start
    assert report.failed == 0 and report.added > 0, report
    return report.added / seconds


def encoder_only(models: dict[str, Path], n: int = 64) -> dict[str, float]:
    """Images/s of the image encoder alone (preprocessed pixels) in the three ways described above."""
    import numpy as np

    from glimpse.encoders.onnx import OnnxEncoder
    from glimpse.registry import load_spec

    threads = len(os.sched_getaffinity(0))
    pixels = np.random.default_rng(0).standard_normal((n, 3, 224, 224)).astype(np.float32)
    out = {}
    for label, kind, workers in (("batch1_parallel", "static", None), ("batch1_intra_op", "static", 1),
                                 ("dynamic_batch32", "dynamic", None)):
        encoder = OnnxEncoder(load_spec(str(models[kind])), models[kind], threads=threads)
        encoder.encode_pixels(pixels[:4])  # session load + warm-up
        if workers == 1:  # the alternative: a session with every thread, runs one after another
            from glimpse.encoders.onnx import make_session

            encoder._sessions["visual"] = make_session(encoder.files["visual"], threads=threads)
            encoder._workers["visual"] = 1
        start = time.perf_counter()
        encoder.encode_pixels(pixels)
        out[label] = round(n / (time.perf_counter() - start), 2)
        encoder.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-immich-batch"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    models = build(args.work)
    images = DATA / "coco128" / "images"
    index_once(models["static"], images, args.work / "warmup")  # page cache + first session load
    rates: dict[str, list[float]] = {"static": [], "dynamic": []}
    for round_ in range(args.rounds):
        order = ("static", "dynamic") if round_ % 2 == 0 else ("dynamic", "static")
        for kind in order:
            rates[kind].append(index_once(models[kind], images, args.work / f"lib-{kind}"))
    static, dynamic = statistics.median(rates["static"]), statistics.median(rates["dynamic"])
    encoder_rates = encoder_only(models)
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    print(json.dumps({
        "images": len(list(images.glob("*.jpg"))), "cores": len(os.sched_getaffinity(0)),
        "static_batch1_images_per_s": round(static, 2), "dynamic_batch_images_per_s": round(dynamic, 2),
        "ratio_static_over_dynamic": round(static / dynamic, 3), "rounds": rates,
        "encoder_only_images_per_s": encoder_rates,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_flags": [f for f in flags if f.startswith(("avx", "fma", "amx", "sse4"))],
        "date": time.strftime("%Y-%m-%d"),
    }, indent=1))


if __name__ == "__main__":
    main()
