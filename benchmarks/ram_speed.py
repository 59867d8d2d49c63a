"""RAM++ Swin-L 384 tagging throughput on CPU: torch fp32 vs ONNX fp32 vs ONNX int8, measured in one run.

Random weights (the official checkpoint is not needed to measure speed): RAM++ shapes — Swin-L, 384 px, 4,585
tags x 51 descriptions, q2l head (768 hidden, 2 layers). The baseline is torch fp32 on the same pixels in the
same process; ONNX figures are ratios to it. Also reports how far ONNX logits are from torch's and how many of
the tag sets (at 0.68, RAM's default threshold) are identical. Bounded: a few images, one warm-up each.

    python benchmarks/ram_speed.py --images 4 --batch 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, pixels: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    fn(pixels[:batch])  # warm-up (allocations, onnxruntime's first-run planning)
    start = time.perf_counter()
    out = np.concatenate([fn(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])
    return time.perf_counter() - start, out


def main() -> None:
    import torch

    from glimpse.encoders.onnx import make_session
    from glimpse.tagging.onnx_export import export_graph, quantize_int8
    from glimpse.tagging.ram_model import RamConfig, RamModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = RamModel(RamConfig(num_classes=4585, plus=True, descriptions=51)).eval()
    with torch.no_grad():
        model.label_embed.copy_(torch.nn.functional.normalize(torch.randn_like(model.label_embed), dim=-1))
    pixels = np.random.default_rng(0).standard_normal((args.images, 3, 384, 384)).astype(np.float32)

    held = {"model": model}  # dropped before quantising, to free ~1.3 GB

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return held["model"](torch.from_numpy(x)).numpy()

    results: dict[str, dict[str, float]] = {}
    t_torch, ref = timed(run_torch, pixels, args.batch)
    results["torch fp32"] = {"seconds": t_torch, "images_per_s": args.images / t_torch}
    cut = np.log(0.68 / 0.32)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_graph(model, Path(tmp) / "fp32.onnx")
        held.clear()
        del model
        int8 = quantize_int8(fp32, Path(tmp) / "int8.onnx")
        for name, path in (("onnx fp32", fp32), ("onnx int8", int8)):
            session = make_session(path, threads=args.threads)
            seconds, got = timed(lambda x, s=session: s.run(None, {"pixel_values": x})[0], pixels, args.batch)
            results[name] = {
                "seconds": seconds, "images_per_s": args.images / seconds, "speedup_vs_torch": t_torch / seconds,
                "max_abs_logit_diff": float(np.abs(got - ref).max()),
                "identical_tag_sets": int(sum(((got[i] > cut) == (ref[i] > cut)).all() for i in range(len(ref)))),
                "file_mb": path.stat().st_size / 2**20,
            }
            del session
    print(json.dumps({"images": args.images, "batch": args.batch, "results": results}, indent=2))


if __name__ == "__main__":
    main()
