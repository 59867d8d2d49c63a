"""GPU throughput with decoding: ViT-B/32 indexing (fp16) and RAM++ Swin-L 384 tagging (fp16 vs fp32).

For the GPU figures issues 3 and 5 ask for. Runs on a CUDA machine with torch + transformers:

    python benchmarks/gpu_throughput.py --images DIR [--n 4096] [--batch 256] [--workers 16]
    python benchmarks/gpu_throughput.py --images DIR --sweep     # encoder alone, fp16/fp32 x batch sizes

1. ViT-B/32-shaped CLIP image tower, random weights (speed does not depend on them), fp16 on the GPU.
   * encoder alone: random pixels already on the GPU (the ceiling);
   * end to end: N files read from DIR (cycled) → glimpse's decoder (JPEG draft) + exact numpy preprocessing
     in a pool of decode workers (threads and processes are both tried) → batches to the GPU, overlapped;
   * seed-style baseline: full PIL decode + transformers' CLIPProcessor + the same fp16 model, batch 32.
2. RAM++ (glimpse.tagging.ram_model, Swin-L 384, 4,585 tags × 51 descriptions), random weights: images/s in
   fp16 and fp32 on random pixels (the tagger's cost is the model, not decoding).
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from glimpse.images import decode_image
from glimpse.preprocess import preprocess_image
from glimpse.spec import Preprocess

PRE = Preprocess(height=224, width=224, resize="shortest", shortest_edge=224, crop=True, interpolation="bicubic")


def emit(**row: object) -> None:
    print(json.dumps(row), flush=True)


def load_pixels(path: str) -> np.ndarray:
    """One file → float16[3, 224, 224] exactly as glimpse's indexer prepares it (float16 halves the transfer)."""
    with open(path, "rb") as fh:
        decoded = decode_image(fh.read(), min_side=PRE.min_side)
    return preprocess_image(decoded.image, PRE).astype(np.float16)


def clip_tower(dtype_name: str = "float16"):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              patch_size=32, image_size=224, projection_dim=512, hidden_act="quick_gelu")
    torch.manual_seed(0)
    return CLIPVisionModelWithProjection(config).to("cuda", dtype=getattr(torch, dtype_name)).eval()


def encoder_alone(model, batch: int) -> None:
    """The encoder's ceiling: random pixels already on the GPU, in the model's dtype."""
    import torch

    dtype = next(model.parameters()).dtype
    pixels = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
    with torch.inference_mode():
        for _ in range(3):
            model(pixel_values=pixels)
        torch.cuda.synchronize()
        rounds = max(4, 8192 // batch)
        start = time.perf_counter()
        for _ in range(rounds):
            model(pixel_values=pixels).image_embeds.float().cpu()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    emit(bench="clip-b32 encoder alone", dtype=str(dtype).removeprefix("torch."), batch=batch,
         images_per_s=round(batch * rounds / seconds))


def encoder_sweep() -> None:
    """fp16 and fp32 at batch 64 / 256 / 1024 (the per-GPU rates in docs/SCALING.md)."""
    for dtype_name in ("float16", "float32"):
        model = clip_tower(dtype_name)
        for batch in (64, 256, 1024):
            encoder_alone(model, batch)


def end_to_end(model, files: list[str], batch: int, pool: Executor, label: str) -> None:
    import torch

    def encode(chunk: list[np.ndarray]) -> None:
        tensor = torch.from_numpy(np.stack(chunk)).to("cuda", non_blocking=True)
        with torch.inference_mode():
            vectors = model(pixel_values=tensor).image_embeds
            torch.nn.functional.normalize(vectors.float(), dim=-1).cpu()

    list(pool.map(load_pixels, files[:64]))  # warm the pool (process start-up, imports)
    start = time.perf_counter()
    pending: deque = deque()
    chunk: list[np.ndarray] = []
    window = batch * 4
    for path in files:
        pending.append(pool.submit(load_pixels, path))
        if len(pending) >= window:
            chunk.append(pending.popleft().result())
            if len(chunk) == batch:
                encode(chunk)
                chunk = []
    while pending:
        chunk.append(pending.popleft().result())
        if len(chunk) == batch:
            encode(chunk)
            chunk = []
    if chunk:
        encode(chunk)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    emit(bench="clip-b32 end to end with decoding", pool=label, dtype="float16", batch=batch, images=len(files),
         images_per_s=round(len(files) / seconds))


def decode_only(files: list[str], pool: Executor, label: str) -> None:
    start = time.perf_counter()
    for _ in pool.map(load_pixels, files, chunksize=16):
        pass
    emit(bench="decode+preprocess alone", pool=label, images=len(files),
         images_per_s=round(len(files) / (time.perf_counter() - start)))


def baseline(model, files: list[str]) -> None:
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(files), 32):
            images = [Image.open(f).convert("RGB") for f in files[i : i + 32]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to("cuda", torch.float16)
            model(pixel_values=pixels).image_embeds.float().cpu()
    torch.cuda.synchronize()
    emit(bench="seed-style baseline (full PIL decode + CLIPProcessor, batch 32)", dtype="float16",
         images=len(files), images_per_s=round(len(files) / (time.perf_counter() - start)))


def single_core_costs(files: list[str]) -> None:
    """Where one core's time goes: read, decode (draft), preprocess — per image, in this process."""
    from PIL import Image

    read = decode = prep = 0.0
    for path in files:
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            data = fh.read()
        t1 = time.perf_counter()
        decoded = decode_image(data, min_side=PRE.min_side)
        t2 = time.perf_counter()
        preprocess_image(decoded.image, PRE)
        t3 = time.perf_counter()
        read, decode, prep = read + t1 - t0, decode + t2 - t1, prep + t3 - t2
    full = time.perf_counter()
    for path in files:
        Image.open(path).convert("RGB")
    full = time.perf_counter() - full
    n = len(files)
    emit(bench="single core ms per image", read=round(1e3 * read / n, 2), decode_draft=round(1e3 * decode / n, 2),
         preprocess=round(1e3 * prep / n, 2), full_pil_decode=round(1e3 * full / n, 2))


def gpu_decode_end_to_end(model, files: list[str], batch: int, workers: int) -> None:
    """nvJPEG through torchvision (when the machine has it): bytes read on CPU threads, decode + resize on the GPU.

    Not glimpse's exact preprocessing (GPU bicubic differs from PIL's in the last bits); reported as the ceiling
    of a GPU-decode path, next to the exact CPU-decode path.
    """
    import torch
    import torchvision
    from torchvision.io import ImageReadMode, decode_jpeg

    mean = torch.tensor(PRE.mean, device="cuda").view(1, 3, 1, 1)
    std = torch.tensor(PRE.std, device="cuda").view(1, 3, 1, 1)

    def read(path: str) -> torch.Tensor:
        with open(path, "rb") as fh:
            return torch.frombuffer(bytearray(fh.read()), dtype=torch.uint8)

    def run(chunk: list[torch.Tensor]) -> None:
        images = decode_jpeg(chunk, mode=ImageReadMode.RGB, device="cuda")
        resized = []
        for img in images:
            h, w = img.shape[-2:]
            scale = 224 / min(h, w)
            size = (max(224, round(h * scale)), max(224, round(w * scale)))
            x = torch.nn.functional.interpolate(img[None].float(), size=size, mode="bicubic", antialias=True)
            top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
            resized.append(x[..., top : top + 224, left : left + 224])
        pixels = ((torch.cat(resized) / 255.0 - mean) / std).half()
        with torch.inference_mode():
            model(pixel_values=pixels).image_embeds.float().cpu()

    with ThreadPoolExecutor(workers) as pool:
        run(list(pool.map(read, files[:batch])))
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(files), batch):
            run(list(pool.map(read, files[i : i + batch])))
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    emit(bench="clip-b32 end to end, nvJPEG GPU decode (torchvision)", torchvision=torchvision.__version__,
         dtype="float16", batch=batch, images=len(files), images_per_s=round(len(files) / seconds))


def ram_plus(batch: int, images: int) -> None:
    import torch

    from glimpse.tagging.ram_model import RamConfig, RamModel

    torch.manual_seed(0)
    model = RamModel(RamConfig(num_classes=4585, plus=True, descriptions=51)).eval().to("cuda")
    for dtype in (torch.float16, torch.float32):
        model = model.to(dtype)
        pixels = torch.randn(batch, 3, 384, 384, device="cuda", dtype=dtype)
        with torch.inference_mode():
            model(pixels)
            torch.cuda.synchronize()
            rounds = max(2, images // batch)
            start = time.perf_counter()
            for _ in range(rounds):
                torch.sigmoid(model(pixels).float()).cpu()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        emit(bench="ram++ swin-l 384 tagging", dtype=str(dtype).removeprefix("torch."), batch=batch,
             images_per_s=round(batch * rounds / seconds, 1))


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEG photos (cycled to --n files)")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--skip-ram", action="store_true")
    parser.add_argument("--skip-cpu-decode", action="store_true")
    parser.add_argument("--gpu-decode", action="store_true", help="also measure nvJPEG decode via torchvision")
    parser.add_argument("--sweep", action="store_true", help="only the encoder alone: fp16/fp32 x batch 64/256/1024")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    emit(gpu=torch.cuda.get_device_name(0), torch=torch.__version__, cpus=os.cpu_count(), workers=args.workers)
    if args.sweep:
        encoder_sweep()
        return
    sources = sorted(str(p) for p in args.images.glob("*.jpg"))
    files = [sources[i % len(sources)] for i in range(args.n)]
    model = clip_tower()
    encoder_alone(model, args.batch)
    single_core_costs(files[:128])
    if args.gpu_decode:
        gpu_decode_end_to_end(model, files, args.batch, args.workers)
    if not args.skip_cpu_decode:
        with ThreadPoolExecutor(args.workers) as threads:
            decode_only(files[:1024], threads, "threads")
            end_to_end(model, files, args.batch, threads, "threads")
        with ProcessPoolExecutor(args.workers) as procs:
            decode_only(files[:1024], procs, "processes")
            end_to_end(model, files, args.batch, procs, "processes")
        baseline(model, files[:512])
    if not args.skip_ram:
        del model
        torch.cuda.empty_cache()
        ram_plus(batch=32, images=256)


if __name__ == "__main__":
    main()
