"""End-to-end indexing throughput: the seed-style baseline vs `glimpse index`, same images, same run.

(a) baseline, as the CLIP image-search tutorials do it: full PIL decode of every file, transformers'
    CLIPProcessor, CLIPModel.get_image_features eager, batch 32, one thread of Python doing it all;
(b) glimpse: `Library.index` (JPEG draft decode + our numpy preprocessing in worker threads, overlapped
    with encoding, one SQLite transaction per batch, FAISS index at the end).

Both use the same ViT-B/32-shaped CLIP with random weights (speed does not depend on the weights) and
run in fresh subprocesses so peak RSS is measured per variant. Images: ../shared/data/coco128 (128
photos, ~640 px) plus generated 12-megapixel JPEGs.

    python benchmarks/index_throughput.py [--big 16] [--repeat 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))


def make_big_jpegs(directory: Path, n: int, size: tuple[int, int] = (4000, 3000)) -> list[Path]:
    """``n`` deterministic 12 MP JPEGs (smooth colour fields with detail), cached between runs."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"big_{i:03d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(i)
            small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
            img = small.resize(size, Image.Resampling.BICUBIC)
            noise = rng.integers(-12, 12, (size[1], size[0], 3), dtype=np.int16)
            pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(path, quality=90)
        paths.append(path)
    return paths


def run_baseline(model_dir: str, files: list[str], batch_size: int) -> dict:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)
    start = time.perf_counter()
    vectors = []
    with torch.inference_mode():
        for i in range(0, len(files), batch_size):
            images = [Image.open(f).convert("RGB") for f in files[i : i + batch_size]]
            inputs = processor(images=images, return_tensors="pt")
            out = model.get_image_features(pixel_values=inputs["pixel_values"])
            out = out if isinstance(out, torch.Tensor) else out.pooler_output
            vectors.append(torch.nn.functional.normalize(out, dim=-1).numpy())
    seconds = time.perf_counter() - start
    return {"images": len(files), "seconds": seconds}


def run_glimpse(model_dir: str, folder: str, batch_size: int) -> dict:
    import glimpse

    with tempfile.TemporaryDirectory() as lib_dir:
        lib = glimpse.open_library(lib_dir, model=model_dir)
        _ = lib.encoder  # load the model outside the timed region, as the baseline does
        start = time.perf_counter()
        report = lib.index([folder], batch_size=batch_size)
        seconds = time.perf_counter() - start
        lib.close()
    return {"images": report.encoded, "seconds": seconds, "failed": report.failed}


def child(args: argparse.Namespace) -> None:
    files = sorted(str(p) for p in Path(args.folder).iterdir())
    if args.variant == "baseline":
        result = run_baseline(args.model, files, args.batch_size)
    else:
        result = run_glimpse(args.model, args.folder, args.batch_size)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=16, help="number of generated 12 MP JPEGs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the variants this many times")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "glimpse-bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["baseline", "glimpse"], dest="variant", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return

    from tiny_models import make_clip_b32_shaped

    coco = SHARED / "coco128" / "images"
    if not coco.is_dir():
        sys.exit(f"{coco} not found: this benchmark needs ../shared/data (set GLIMPSE_TEST_DATA)")
    folder = args.work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(coco.glob("*.jpg")):
        dst = folder / src.name
        if not dst.exists():
            os.link(src, dst) if src.stat().st_dev == folder.stat().st_dev else dst.write_bytes(src.read_bytes())
    make_big_jpegs(folder, args.big)
    model_dir = args.work / "clip-b32-random"
    if not (model_dir / "config.json").exists():
        make_clip_b32_shaped(model_dir)

    runs: dict[str, list[dict]] = {"baseline": [], "glimpse": []}
    for _ in range(args.repeat):
        for variant in ("baseline", "glimpse"):
            cmd = [sys.executable, __file__, "--child", variant, "--model", str(model_dir), "--folder", str(folder),
                   "--batch-size", str(args.batch_size)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))

    def best(variant: str) -> dict:
        return min(runs[variant], key=lambda r: r["seconds"])

    base, ours = best("baseline"), best("glimpse")
    base_ips = base["images"] / base["seconds"]
    ours_ips = ours["images"] / ours["seconds"]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "images": f"{len(list(coco.glob('*.jpg')))} coco128 + {args.big} generated 12 MP JPEGs",
        "baseline_images_per_s": round(base_ips, 2),
        "glimpse_images_per_s": round(ours_ips, 2),
        "ratio": round(ours_ips / base_ips, 2),
        "baseline_peak_rss_mb": round(base["peak_rss_mb"]),
        "glimpse_peak_rss_mb": round(ours["peak_rss_mb"]),
        "runs": runs,
    }
    print(f"{'variant':<10} {'images/s':>9} {'peak RSS':>10}")
    print(f"{'baseline':<10} {base_ips:>9.2f} {base['peak_rss_mb']:>8.0f}MB")
    print(f"{'glimpse':<10} {ours_ips:>9.2f} {ours['peak_rss_mb']:>8.0f}MB")
    print(f"ratio glimpse/baseline: {ours_ips / base_ips:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
