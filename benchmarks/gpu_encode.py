"""GPU images/s of a ViT-B/32-shaped CLIP image tower (random weights: same shapes and cost as
openai/clip-vit-base-patch32), fp16 and fp32, at several batch sizes — the per-GPU rate in docs/SCALING.md.

    python benchmarks/gpu_encode.py            # needs torch with CUDA and transformers

Pixels are random tensors already on the GPU: this is the encoder's ceiling, decode excluded.
"""

from __future__ import annotations

import json
import time


def main() -> None:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              patch_size=32, image_size=224, projection_dim=512, hidden_act="quick_gelu")
    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": []}
    for dtype in (torch.float16, torch.float32):
        model = CLIPVisionModelWithProjection(config).to("cuda", dtype=dtype).eval()
        for batch in (64, 256, 1024):
            pixels = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
            with torch.inference_mode():
                for _ in range(3):
                    model(pixel_values=pixels)
                torch.cuda.synchronize()
                rounds = max(3, 4096 // batch)
                start = time.perf_counter()
                for _ in range(rounds):
                    model(pixel_values=pixels).image_embeds.float().cpu()
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            results["rows"].append({"dtype": str(dtype).removeprefix("torch."), "batch": batch,
                                    "images_per_s": round(batch * rounds / seconds, 1)})
            print(json.dumps(results["rows"][-1]), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
