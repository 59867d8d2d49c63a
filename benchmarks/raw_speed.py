"""RAW decoding: the embedded preview against a full demosaic (and a half-size one), on the same files.

Issue 14 [I]: "via the embedded preview ≥ 5× faster than full demosaic on the same files, same results within the
model's tolerance where the preview is large enough". The files are DNGs written by ``tests/dng_fixtures.py``
from coco128 photos upscaled to a camera's sensor size (default 6000 × 4000, 24 MP, 16-bit, uncompressed —
a 48 MB file like a real camera's) with a 1620 × 1080 JPEG preview, the size many cameras embed. LibRaw
(rawpy) does the demosaicing; glimpse decodes as the indexer does (``decode_image`` with the model's
``min_side``, 224).

"Same results": each path's picture goes through the same CLIP preprocessing (224 × 224 centre crop, CLIP
normalisation) and the mean absolute difference of the model inputs is reported (in normalised units, where
the preprocessing's own JPEG-vs-PNG noise is ~0.01); with ``--model`` the cosine of the embeddings as well.

    python benchmarks/raw_speed.py [--files 6] [--sensor 6000x4000] [--model DIR_OR_NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dng_fixtures import write_dng  # noqa: E402 - from the tests folder, put on the path above
from glimpse.images import decode_image, open_regular_file  # noqa: E402
from glimpse.preprocess import preprocess_image  # noqa: E402
from glimpse.spec import Preprocess  # noqa: E402

# The test files' sensor data are linear sRGB: rendered with sRGB's curve and no auto-brightening, a demosaic
# gives back the picture the preview was made from, so the difference measured is the decoding's, not a grading's.
RENDER = {"gamma": (2.4, 12.92), "no_auto_bright": True}
COCO = ROOT.parent / "shared" / "data" / "coco128" / "images"


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return sorted(f for f in line.split() if f.startswith(("avx2", "avx512f", "avx512_vnni", "amx")))


def make_files(directory: Path, n: int, sensor: tuple[int, int]) -> list[Path]:
    sources = sorted(COCO.glob("*.jpg"))[:n]
    if len(sources) < n:
        raise SystemExit(f"need {n} photos in {COCO} (../shared/data)")
    files = []
    for i, src in enumerate(sources):
        with Image.open(src) as im:
            big = np.asarray(im.convert("RGB").resize(sensor, Image.Resampling.BILINEAR))
        preview = np.asarray(Image.fromarray(big).resize((1620, 1080), Image.Resampling.LANCZOS))
        files.append(write_dng(directory / f"raw_{i:02d}.dng", big, preview=preview, linear=True))
    return files


def timed(fn, files):
    out, started = [], time.perf_counter()
    for path in files:
        out.append(fn(path))
    return out, (time.perf_counter() - started) / len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--sensor", default="6000x4000")
    parser.add_argument("--model", default=None, help="also compare embeddings with this model")
    args = parser.parse_args()
    import rawpy

    sensor = tuple(int(v) for v in args.sensor.split("x"))
    pre = Preprocess(224, 224, shortest_edge=224)  # CLIP ViT-B/32 at 224
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files, sensor)  # type: ignore[arg-type]

        def via_glimpse(path: Path) -> Image.Image:
            with open_regular_file(path) as fh:
                return decode_image(fh, min_side=pre.min_side).image

        def demosaic(half: bool):
            def run(path: Path) -> Image.Image:
                with rawpy.imread(str(path)) as raw:
                    return Image.fromarray(raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8, **RENDER))
            return run

        preview_imgs, preview_s = timed(via_glimpse, files)
        half_imgs, half_s = timed(demosaic(True), files)
        full_imgs, full_s = timed(demosaic(False), files)

    def inputs(images):
        return np.stack([preprocess_image(im, pre) for im in images])

    x_prev, x_half, x_full = inputs(preview_imgs), inputs(half_imgs), inputs(full_imgs)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "load": os.getloadavg()[0],
        "files": len(files), "sensor": args.sensor, "preview": "1620x1080 JPEG",
        "ms_per_file": {"preview (glimpse)": round(preview_s * 1e3, 1), "half-size demosaic": round(half_s * 1e3, 1),
                        "full demosaic": round(full_s * 1e3, 1)},
        "speedup_vs_full": round(full_s / preview_s, 1), "speedup_vs_half": round(half_s / preview_s, 1),
        "model_input_mean_abs_diff": {"preview vs full": round(float(np.abs(x_prev - x_full).mean()), 4),
                                      "half vs full": round(float(np.abs(x_half - x_full).mean()), 4)},
    }
    if args.model:
        from glimpse.registry import load_encoder

        encoder = load_encoder(args.model)
        v = {k: encoder.encode_pixels(x) for k, x in (("preview", x_prev), ("half", x_half), ("full", x_full))}
        result["embedding_cos_min"] = {f"{a} vs full": round(float((v[a] * v["full"]).sum(1).min()), 5)
                                       for a in ("preview", "half")}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
