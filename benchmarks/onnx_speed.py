"""ONNX fast path vs the seed-style baseline, all measured in one run (ratios are what count).

    python benchmarks/onnx_speed.py [--work DIR] [--photos 8] [--skip-baseline]

Model: a random ViT-B/32-shaped CLIP (tests/tiny_models.make_clip_b32_shaped), exported with
``glimpse export`` to fp32 and int8. Images: ../shared/data/coco128 (128 photos, 640 px) + ``--photos``
generated 12 MP JPEGs. Measures:

* baseline: transformers CLIPModel (eager) + CLIPProcessor + full PIL decode, batch 32, end to end;
* encoder alone (preprocessed pixels, batch 32): torch, ONNX fp32, ONNX int8;
* ``glimpse index`` end to end (new process per run, fresh library): ONNX fp32, ONNX int8;
* text query encode latency (batch 1, median), ONNX fp32;
* cold ``glimpse search`` (new process, 10k-vector library, ONNX fp32): median wall of 5 runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# Not `python -m glimpse.cli`: feature command modules import glimpse.cli, which must not be __main__.
GLIMPSE = [sys.executable, "-c", "from glimpse.cli import main; main()"]


def dataset(work: Path, photos: int) -> tuple[Path, list[str]]:
    from glimpse.bench import generated_photos

    images = work / "images"
    if not images.exists():
        (images / "coco").mkdir(parents=True)
        for src in sorted((DATA / "coco128" / "images").glob("*.jpg")):
            os.symlink(src, images / "coco" / src.name)
        generated_photos(images / "12mp", photos)
    files = sorted(str(p) for p in images.rglob("*.jpg"))
    return images, files


def models(work: Path) -> dict[str, Path]:
    from glimpse.encoders.export import export_model
    from tiny_models import make_clip_b32_shaped

    src = work / "b32"
    if not (src / "model.safetensors").exists():
        make_clip_b32_shaped(src)
    out = {"torch": src}
    for precision in ("fp32", "int8"):
        target = work / f"b32-{precision}"
        if not (target / "spec.json").exists():
            export_model(str(src), target, precision=precision)  # type: ignore[arg-type]
        out[precision] = target
    return out


def baseline(src: Path, files: list[str], batch: int = 32) -> float:
    """Seed-style: full PIL decode + CLIPProcessor + CLIPModel eager; images/s end to end."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(src, attn_implementation="eager").eval()
    processor = CLIPProcessor.from_pretrained(src)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(files), batch):
            images = [Image.open(f).convert("RGB") for f in files[i : i + batch]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            model.get_image_features(pixel_values=pixels)
    return len(files) / (time.perf_counter() - start)


def encoder_alone(model: Path, files: list[str], batch: int = 32) -> float:
    from glimpse.images import open_image
    from glimpse.preprocess import preprocess_batch
    from glimpse.registry import load_encoder

    encoder = load_encoder(str(model), batch_size=batch)
    pre = encoder.spec.preprocess
    pixels = preprocess_batch([open_image(f, min_side=pre.min_side).image for f in files], pre)
    encoder.encode_pixels(pixels[:batch])  # warm-up: session creation and first-run allocations
    start = time.perf_counter()
    encoder.encode_pixels(pixels)
    return len(files) / (time.perf_counter() - start)


def index_e2e(model: Path, images: Path, library: Path) -> float:
    proc = subprocess.run([*GLIMPSE, "--library", str(library), "--model", str(model),
                           "index", str(images), "--json"], capture_output=True, text=True, env=ENV, check=True)
    return float(json.loads(proc.stdout)["images_per_second"])


def text_latency_ms(model: Path) -> float:
    from glimpse.bench import QUERIES
    from glimpse.registry import load_encoder

    encoder = load_encoder(str(model))
    encoder.encode_texts(["warm up"])
    times = []
    for _ in range(5):
        for query in QUERIES:
            start = time.perf_counter()
            encoder.encode_texts([query])
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def cold_search(model: Path, library: Path, n: int = 10_000) -> float:
    """Median wall of a new ``glimpse search`` process on a library holding ``n`` vectors of ``model``."""
    from glimpse.catalog import STATE_OK, Catalog, FileUpdate
    from glimpse.registry import load_spec

    spec = load_spec(str(model))
    if not library.exists():
        library.mkdir(parents=True)
        catalog = Catalog(library / "catalog.sqlite3")
        catalog.register_model(spec.key, spec.name, spec.dim, spec.to_dict())
        catalog.set_meta("default_model", str(model))
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(n, spec.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        updates = [FileUpdate(f"/synthetic/{i:05d}.jpg", 1000, i, STATE_OK, hash=f"{i:064x}", width=640,
                              height=480, format="JPEG", vector=vectors[i]) for i in range(n)]
        catalog.apply(updates, spec.key)
        catalog.close()
        subprocess.run([*GLIMPSE, "--library", str(library), "rebuild-index"],
                       env=ENV, check=True, capture_output=True)
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([*GLIMPSE, "--library", str(library), "search",
                        "a dog on the beach", "--json"], env=ENV, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-onnx-bench"))
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    images, files = dataset(args.work, args.photos)
    paths = models(args.work)
    result: dict[str, float] = {"images": len(files)}
    if not args.skip_baseline:
        result["baseline_e2e"] = baseline(paths["torch"], files)
    for name in ("torch", "fp32", "int8"):
        result[f"{name}_encoder"] = encoder_alone(paths[name], files)
    for name in ("fp32", "int8"):
        library = args.work / f"lib-{name}-{time.time_ns()}"
        result[f"{name}_e2e"] = index_e2e(paths[name], images, library)
        result[f"{name}_e2e_over_encoder"] = result[f"{name}_e2e"] / result[f"{name}_encoder"]
        if "baseline_e2e" in result:
            result[f"{name}_e2e_over_baseline"] = result[f"{name}_e2e"] / result["baseline_e2e"]
    result["text_query_ms"] = text_latency_ms(paths["fp32"])
    result["cold_search_s"] = cold_search(paths["fp32"], args.work / "lib-10k")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
