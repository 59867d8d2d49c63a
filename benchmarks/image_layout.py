"""How the image tower uses the cores: one piece of the batch per core (single-threaded session, pieces run at
once: glimpse's layout on a CPU with several cores) vs one run with onnxruntime's intra-op threads (the layout
before 2026-12-03), for the encoder alone and for ``glimpse index`` end to end, fp32 and int8, in one run.

    python benchmarks/image_layout.py [--work DIR] [--rounds 3] [--json OUT]

Photos and models are those of ``benchmarks/index_ceiling.py`` (384 coco128-derived photos + 16 x 12 MP JPEGs;
a random ViT-B/32-shaped CLIP exported to fp32 and int8; made once under ``--work``). Each measurement runs in
its own subprocess; the layouts alternate within a round, and the median of the rounds is reported, with the
ratio pieces / intra-op and the CPU flags. A one-image latency (median of 15 runs) is reported for both
layouts too: the price of the pieces layout is one image on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
LAYOUTS = ("pieces", "intra_op")


def _use_layout(encoder, layout: str) -> None:
    """Give ``encoder`` (an OnnxEncoder) the image session of ``layout`` (benchmark-only access)."""
    from glimpse.encoders.onnx import make_session

    threads = encoder.threads
    if layout == "intra_op":
        encoder._sessions["visual"] = make_session(encoder.files["visual"], threads=threads)
        encoder._workers["visual"] = 1
    else:
        encoder._sessions["visual"] = make_session(encoder.files["visual"], threads=1)
        encoder._workers["visual"] = threads


def child(kind: str, layout: str, model: str, folder: str) -> dict:
    import numpy as np

    import glimpse
    from glimpse.images import open_image
    from glimpse.preprocess import preprocess_batch
    from glimpse.registry import load_encoder

    if kind == "encoder":
        encoder = load_encoder(model, batch_size=32)
        pre = encoder.spec.preprocess
        files = sorted(str(p) for p in Path(folder).rglob("*.jpg"))
        pixels = preprocess_batch([open_image(f, min_side=pre.min_side).image for f in files], pre)
        _use_layout(encoder, layout)
        encoder.encode_pixels(pixels[:32])  # warm-up
        start = time.perf_counter()
        encoder.encode_pixels(pixels)
        seconds = time.perf_counter() - start
        latency = []
        for i in range(15):
            t = time.perf_counter()
            encoder.encode_pixels(pixels[i : i + 1])
            latency.append(time.perf_counter() - t)
        return {"images_per_s": len(files) / seconds, "one_image_ms": 1000 * statistics.median(latency)}
    with tempfile.TemporaryDirectory() as lib_dir:
        lib = glimpse.open_library(lib_dir, model=model)
        _use_layout(lib.encoder, layout)
        lib.encoder.encode_pixels(np.zeros((2, *lib.spec.preprocess.input_shape), np.float32))  # warm-up
        start = time.perf_counter()
        report = lib.index([folder], batch_size=32)
        seconds = time.perf_counter() - start
        lib.close()
    return {"images_per_s": report.encoded / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "glimpse-ceiling-bench")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "LAYOUT", "MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    from index_ceiling import cpu_flags, photo_set
    from onnx_speed import models

    args.work.mkdir(parents=True, exist_ok=True)
    folder = photo_set(args.work, args.big)
    paths = models(args.work)
    runs: dict[str, list[dict]] = {}
    for round_ in range(args.rounds):
        for precision in ("fp32", "int8"):
            for kind in ("encoder", "index"):
                order = LAYOUTS if round_ % 2 == 0 else LAYOUTS[::-1]
                for layout in order:
                    cmd = [sys.executable, __file__, "--child", kind, layout, str(paths[precision]), str(folder)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                         env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
                    runs.setdefault(f"{precision}:{kind}:{layout}", []).append(json.loads(out.splitlines()[-1]))
    summary: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
                     "rounds": args.rounds, "runs": runs}
    print(f"CPU flags: {summary['cpu_flags']}; {args.rounds} rounds, medians")
    print(f"{'':<14} {'pieces':>8} {'intra-op':>9} {'ratio':>6}")
    for precision in ("fp32", "int8"):
        for kind in ("encoder", "index"):
            rate = {lay: statistics.median(r["images_per_s"] for r in runs[f"{precision}:{kind}:{lay}"])
                    for lay in LAYOUTS}
            summary[f"{precision}_{kind}_pieces_over_intra_op"] = round(rate["pieces"] / rate["intra_op"], 3)
            print(f"{precision + ' ' + kind:<14} {rate['pieces']:>8.1f} {rate['intra_op']:>9.1f} "
                  f"{rate['pieces'] / rate['intra_op']:>6.2f}  images/s")
        ms = {lay: statistics.median(r["one_image_ms"] for r in runs[f"{precision}:encoder:{lay}"]) for lay in LAYOUTS}
        summary[f"{precision}_one_image_ms"] = ms
        print(f"{precision + ' 1 image':<14} {ms['pieces']:>8.1f} {ms['intra_op']:>9.1f} {'':>6}  ms")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
