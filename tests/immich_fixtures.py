"""Tiny random model folders written the way immich's exporter writes them (needs torch + transformers).

immich's exporter (``machine-learning/export/immich_model_exporter/exporters/onnx/models/openclip.py`` and
``mclip.py`` in immich-app/immich) writes, per model::

    config.json                     the open_clip model config (embed_dim, vision_cfg, text_cfg)
    visual/model.onnx               image [1, 3, S, S] float32 -> embedding [1, d], L2-normalised
    visual/preprocess_cfg.json      open_clip's preprocess cfg (size, mode, mean, std, interpolation, resize_mode)
    textual/model.onnx              text int32 [1, context_length] -> embedding [1, d], L2-normalised
                                    (M-CLIP: input_ids + attention_mask int32 [1, 77])
    textual/tokenizer*.json, ...    AutoTokenizer.from_pretrained(...).save_pretrained(textual/)

with the batch axis fixed (its ``dynamic_axes`` are commented out). These fixtures do the same with tiny
random towers: ``clip`` is a transformers CLIPModel; ``siglip2``, ``nllb`` and ``mclip`` are small towers that
mean-pool every text position, so padding, cleaning and language tokens all change the embedding.
``dynamic=True`` exports the same tower with a dynamic batch (for the benchmark).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import tiny_models

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
FLORES_TOKENS = ["eng_Latn", "zho_Hans", "deu_Latn", "fra_Latn", "jpn_Jpan"]
STYLES = ("clip", "siglip2", "nllb", "mclip")

# The inputs of the goldens (tests/make_immich_goldens.py) and of tests/test_immich.py.
TEXTS = ["a photo of a dog", "A RED car, on the beach!", "  spaces   everywhere\tand\nnewlines ", "一只猫",
         "it's a dog's life: (really)", "dog " * 100]
#: immich's language codes (its web client's Weblate locales) and the --lang a glimpse user gives for the same
LANGUAGES = {"en": "en", "zh-CN": "zh-CN", "de": "de"}
NAMES = {"clip": "ViT-tiny__openai", "siglip2": "ViT-tiny-SigLIP2__webli", "nllb": "nllb-clip-tiny-siglip__v1",
         "mclip": "XLM-Roberta-Tiny-Vit-B-32"}


def images() -> list:
    """Deterministic RGB images of several aspect ratios (resize + crop rules matter)."""
    from PIL import Image

    rng = np.random.default_rng(7)
    sizes = [(32, 32), (48, 40), (37, 61), (100, 30), (64, 64)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for w, h in sizes]


def _export(module: Any, args: tuple, path: Path, names: list[str], dynamic: bool) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch"} for name in [*names, "embedding"]} if dynamic else None
    torch.onnx.export(module, args, path.as_posix(), input_names=names, output_names=["embedding"],
                      opset_version=17, dynamic_axes=axes, dynamo=False)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _towers(style: str, vocab: int, dim: int, seed: int) -> tuple[Any, Any]:
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Visual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, 24, 8, stride=8)
            self.proj = nn.Linear(24, dim)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = self.patch(image).flatten(2).mean(-1)
            return nn.functional.normalize(self.proj(torch.tanh(x)), dim=-1)

    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, 24)
            self.position = nn.Parameter(torch.randn(1, 77, 24) * 0.1)
            self.proj = nn.Linear(24, dim)

        def pooled(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            x = torch.tanh(self.embed(ids) + self.position[:, : ids.shape[1]])
            if mask is None:  # SigLIP-like: every position, padding included
                return x.mean(1)
            m = mask.unsqueeze(2).to(x.dtype)  # M-CLIP: mean over real tokens
            return (x * m).sum(1) / m.sum(1)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return nn.functional.normalize(self.proj(self.pooled(ids, mask)), dim=-1)

    return Visual().eval().requires_grad_(False), Text().eval().requires_grad_(False)


def make_immich_model(directory: Path, style: str = "clip", *, dynamic: bool = False, seed: int = 0,
                      source: Path | None = None) -> Path:
    """Write an immich-format model of ``style`` (one of ``STYLES``) into ``directory``; returns it.

    ``source``: for ``clip``, a transformers CLIP checkpoint directory to export (default: a tiny random one).
    """
    import torch
    from transformers import AutoTokenizer, CLIPModel

    directory = Path(directory)
    work = directory.parent / f".{directory.name}-src"
    textual, visual = directory / "textual", directory / "visual"
    context = 77
    text_cfg: dict[str, Any] = {"context_length": context, "vocab_size": 0, "width": 24, "heads": 2, "layers": 1}
    if style == "clip":
        src = source or tiny_models.make_tiny_clip(work, image_size=32)
        model = CLIPModel.from_pretrained(src).eval()
        size = int(model.config.vision_config.image_size)
        dim = int(model.config.projection_dim)
        tokenizer = AutoTokenizer.from_pretrained(src)

        model.requires_grad_(False)

        class Img(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, image: torch.Tensor) -> torch.Tensor:
                out = self.model.get_image_features(pixel_values=image)
                out = getattr(out, "pooler_output", out)
                return torch.nn.functional.normalize(out, dim=-1)

        class Txt(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, text: torch.Tensor) -> torch.Tensor:
                out = self.model.get_text_features(input_ids=text)
                out = getattr(out, "pooler_output", out)
                return torch.nn.functional.normalize(out, dim=-1)

        vis, txt = Img(), Txt()
        context = int(model.config.text_config.max_position_embeddings)
        text_cfg["context_length"] = context
        cfg_extra: dict[str, Any] = {}
        mean, std, mode = OPENAI_MEAN, OPENAI_STD, "shortest"
    else:
        size, dim = 32, 16
        if style == "mclip":
            tokenizer_dir = tiny_models.make_tiny_chinese_clip(work)  # a BERT WordPiece tokenizer
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        else:
            tokenizer_dir = tiny_models.write_small_clip_tokenizer(work)
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            if style == "siglip2":  # a pad token that is not eos: full padding must use the configured one
                tokenizer.add_special_tokens({"pad_token": "<pad>"})
            if style == "nllb":  # FLORES-200 codes are special tokens of NLLB's tokenizer
                tokenizer.add_special_tokens({"additional_special_tokens": FLORES_TOKENS})
        vis, txt = _towers(style, len(tokenizer), dim, seed)
        if style == "siglip2":
            context = 64
            text_cfg.update(context_length=context, tokenizer_kwargs={"clean": "canonicalize"},
                            hf_tokenizer_name="timm/ViT-B-16-SigLIP2")
            cfg_extra = {"init_logit_bias": -10.0, "init_logit_scale": 2.302585}
            mean, std, mode = [0.5] * 3, [0.5] * 3, "squash"
        elif style == "nllb":
            text_cfg.update(hf_tokenizer_name="facebook/nllb-200-distilled-600M")
            cfg_extra = {"init_logit_bias": -10.0}
            mean, std, mode = [0.5] * 3, [0.5] * 3, "squash"
        else:
            cfg_extra = {}
            mean, std, mode = OPENAI_MEAN, OPENAI_STD, "shortest"
    with torch.no_grad():
        _export(vis, (torch.randn(1, 3, size, size),), visual / "model.onnx", ["image"], dynamic)
        ids = torch.ones(1, context, dtype=torch.int32)
        if style == "mclip":
            _export(txt, (ids, torch.ones(1, context, dtype=torch.int32)), textual / "model.onnx",
                    ["input_ids", "attention_mask"], dynamic)
        else:
            _export(txt, (ids,), textual / "model.onnx", ["text"], dynamic)
    tokenizer.save_pretrained(textual)
    _write_json(directory / "config.json", {"embed_dim": dim, "vision_cfg": {"image_size": size, "patch_size": 8,
                                            "width": 24, "layers": 1}, "text_cfg": text_cfg, **cfg_extra})
    _write_json(visual / "preprocess_cfg.json", {"size": [size, size], "mode": "RGB", "mean": mean, "std": std,
                                                 "interpolation": "bicubic", "resize_mode": mode, "fill_color": 0})
    return directory
