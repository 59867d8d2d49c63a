"""Contrastive (CLIP) training and fine-tuning of CLIP, Chinese CLIP and SigLIP checkpoints (torch extra).

    report = train_clip("cifar10/train", "my-clip", config="tiny", tokenizer="clip-tokenizer/")
    # my-clip/ is a Hugging Face checkpoint: glimpse --model my-clip index|classify|eval|export ...

Data is an ImageFolder (captions = class names x templates, a random template per image per step) or
image–caption pairs. The loss is CLIP's symmetric cross-entropy over the batch's image–text similarity
matrix, except that samples of one *group* (one class, or one identical caption) are all positives of
each other: with 10 classes in a 256 batch, plain CLIP targets would call 25 same-class captions
"wrong" for every image and fight the signal.

Fine-tuning keeps the base's family: ``CLIPModel`` and ``ChineseCLIPModel`` (BERT tokenizer) train with
that group-aware softmax loss; ``SiglipModel`` trains as SigLIP was trained, with the pairwise sigmoid
loss using its learned ``logit_scale`` *and* ``logit_bias`` (same-group pairs are the positives) and
text padded to its fixed length. Training from scratch (a size config) builds a CLIPModel.

Images are preprocessed once with the model's own ``Preprocess`` (the exact pixels glimpse feeds the
model at index time) and kept in RAM as ``float32[n, 3, H, W]``; augmentation (random shift with reflect
padding, horizontal flip) happens per batch on those tensors.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.encoders.torch import features, tokenize_for_model
from glimpse.errors import ModelError, UserInputError
from glimpse.families import DEFAULT_FAMILY, FAMILIES, get_family

# Size configs for training from scratch. "tiny" is sized for 32x32 images on a laptop CPU: a ViT with
# 4x4 patches (64 tokens) and a narrow text tower (captions are short, so 32 positions are plenty).
SIZE_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "image_size": 32,
        "projection_dim": 128,
        "vision": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
                   "num_attention_heads": 4, "patch_size": 4},
        "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "max_position_embeddings": 32},
    },
    "small": {
        "image_size": 64,
        "projection_dim": 256,
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6,
                   "num_attention_heads": 4, "patch_size": 8},
        "text": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "max_position_embeddings": 64},
    },
}

REPORT_FILENAME = "train_report.json"


@dataclass
class TrainOptions:
    """Recipe: AdamW, linear warm-up then cosine decay to 0, weight decay off for norms/biases/embeddings."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps
    templates: str = "short"
    augment: bool = True
    seed: int = 0
    max_steps: int | None = None  # stop early (tests, smoke runs); 0 saves the initialised model (a baseline)
    threads: int | None = None


@dataclass
class TrainReport:
    out: str
    images: int
    groups: int
    steps: int
    epochs: int
    seconds: float
    losses: list[float]  # mean loss per epoch
    step_losses: list[float] = field(repr=False)
    eval_top1: list[float]  # per epoch, when an eval folder was given
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainData:
    """Training samples: ``paths[i]`` with candidate captions ``captions[i]`` and positive group ``groups[i]``."""

    paths: list[str]
    captions: list[list[str]]
    groups: list[int]
    class_names: list[str] | None = None


def image_folder_data(root: str | os.PathLike[str], templates: Sequence[str]) -> TrainData:
    """ImageFolder -> samples whose captions are the class name in every template; group = class."""
    from glimpse.datasets import read_image_folder
    from glimpse.templates import fill

    data = read_image_folder(root)
    names = data.class_names()
    per_class = [fill(list(templates), name) for name in names]
    return TrainData(data.paths, [per_class[label] for label in data.labels], list(data.labels), names)


def caption_data(pairs: Sequence[tuple[str, str]]) -> TrainData:
    """Image–caption pairs -> one sample per pair; identical caption texts share a group."""
    if not pairs:
        raise UserInputError("no image–caption pairs to train on")
    ids: dict[str, int] = {}
    groups = [ids.setdefault(caption.strip().lower(), len(ids)) for _, caption in pairs]
    return TrainData([p for p, _ in pairs], [[c] for _, c in pairs], groups)


# -- model set-up --------------------------------------------------------------------------------------
def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelError(f"training needs torch and transformers ({exc}); pip install 'glimpse[torch]'") from exc
    return torch, transformers


def _load_tokenizer(transformers: Any, directory: str | os.PathLike[str], context_length: int) -> Any:
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {directory} ({exc}); pass --tokenizer DIR with a tokenizer.json, "
            "e.g. any CLIP model directory"
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A tokenizer without a limit (transformers' 1e30 sentinel) would let captions overrun the positions.
    tokenizer.model_max_length = context_length
    return tokenizer


def _default_tokenizer_dir() -> Path:
    """The default model's tokenizer files only (cache first, then a download of a few MB, never weights)."""
    from glimpse.checkpoints import TOKENIZER_FILES
    from glimpse.registry import DEFAULT_TOKENIZER_REPO, hub_cache_dir, hub_offline

    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(DEFAULT_TOKENIZER_REPO, allow_patterns=TOKENIZER_FILES, cache_dir=hub_cache_dir(),
                                      local_files_only=hub_offline()))
    except Exception as exc:
        raise UserInputError(
            f"training from scratch needs a tokenizer and the default ({DEFAULT_TOKENIZER_REPO}'s) is not available "
            f"({type(exc).__name__}); pass --tokenizer DIR (a folder with tokenizer.json, e.g. any CLIP model "
            "directory), or --base MODEL to fine-tune"
        ) from exc


def _new_model(transformers: Any, tokenizer: Any, size: str) -> tuple[Any, int]:
    if size not in SIZE_CONFIGS:
        raise UserInputError(f"unknown size config {size!r}; choose one of {sorted(SIZE_CONFIGS)}")
    cfg = SIZE_CONFIGS[size]
    config = transformers.CLIPConfig(
        text_config={
            **cfg["text"],
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            # The text tower pools at the first eos token, so eos (and pad, the same token) must be real ids.
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={**cfg["vision"], "image_size": cfg["image_size"]},
        projection_dim=cfg["projection_dim"],
    )
    return transformers.CLIPModel(config), int(cfg["image_size"])


def _preprocess_for(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Any:
    from glimpse.spec import Preprocess

    return Preprocess(height=image_size, width=image_size, resize="shortest", shortest_edge=image_size, crop=True,
                      interpolation="bicubic", mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]


def _load_pixels(paths: Sequence[str], pre: Any, progress: Callable[[str], None]) -> np.ndarray:
    """``float32[n, 3, H, W]`` of every image, preprocessed exactly as glimpse will at index time."""
    from glimpse.images import open_image
    from glimpse.preprocess import preprocess_image

    out = np.empty((len(paths), 3, pre.height, pre.width), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            out[i] = preprocess_image(open_image(path, min_side=pre.min_side).image, pre)
        except Exception as exc:  # re-raised with the file named
            raise UserInputError(f"cannot use training image {path}: {exc}; remove or fix it") from exc
        if i and i % 2000 == 0:
            progress(f"loaded {i}/{len(paths)} images")
    return out


def _augment(torch: Any, pixels: Any, generator: Any, pad: int) -> Any:
    """Random shift (reflect-padded crop back to size) and horizontal flip of ``float32[b, 3, H, W]``."""
    b, _, h, w = pixels.shape
    padded = torch.nn.functional.pad(pixels, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(b, 3, h, w + 2 * pad)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, 3, h, w)
    shifted = shifted.gather(3, cols)
    flip = torch.rand(b, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], shifted.flip(3), shifted)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        # Norms, biases, embeddings and the temperature are not weights to shrink.
        if param.ndim < 2 or "embedding" in name or "logit_scale" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def contrastive_loss(torch: Any, image_emb: Any, text_emb: Any, groups: Any, logit_scale: Any) -> Any:
    """Symmetric CLIP loss with group-aware targets.

    ``image_emb``/``text_emb``: L2-normalised ``float32[b, d]``; ``groups``: ``int64[b]``. Row ``i``'s target
    is uniform over the columns ``j`` with ``groups[j] == groups[i]`` (just ``i`` when groups are unique,
    which is exactly CLIP's loss).
    """
    logits = logit_scale * image_emb @ text_emb.t()
    same = (groups[:, None] == groups[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    loss_i = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_t = -(targets * logits.t().log_softmax(dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def sigmoid_loss(torch: Any, image_emb: Any, text_emb: Any, groups: Any, logit_scale: Any, logit_bias: Any) -> Any:
    """SigLIP's pairwise sigmoid loss with group-aware labels.

    ``image_emb``/``text_emb``: L2-normalised ``float32[b, d]``; ``groups``: ``int64[b]``; ``logit_scale``
    (already exponentiated) and ``logit_bias``: scalars or ``float32[1]``. Every pair ``(i, j)`` is a
    binary problem with logit ``scale * <image_i, text_j> + bias`` and label +1 when ``groups[i] ==
    groups[j]``, else -1; the loss is ``-sum(log sigmoid(label * logit)) / b`` (SigLIP's normalisation).
    """
    logits = logit_scale * image_emb @ text_emb.t() + logit_bias
    labels = 2.0 * (groups[:, None] == groups[None, :]).float() - 1.0
    return -torch.nn.functional.logsigmoid(labels * logits).sum() / logits.shape[0]


@dataclass
class _TextSide:
    """How captions become text embeddings for one model family (as ``TorchEncoder`` does at query time)."""

    tokenizer: Any
    family: str
    context_length: int
    padding: str  # "longest" or "max_length" (SigLIP pools the last position: fixed-length text)

    def embed(self, torch: Any, model: Any, texts: list[str]) -> Any:
        """L2-normalised ``float32[len(texts), d]`` text embeddings (with gradients when enabled)."""
        inputs = tokenize_for_model(self.tokenizer, texts, family=self.family, padding=self.padding,
                                    context_length=self.context_length)
        return torch.nn.functional.normalize(features(model.get_text_features(**inputs)), dim=-1)


def _batch_loss(torch: Any, model: Any, family: str, image_emb: Any, text_emb: Any, groups: Any) -> Any:
    """The family's training loss (``ModelFamily.loss``) with its learned scale (capped per the family)."""
    row = get_family(family)
    scale = model.logit_scale.exp()
    if row.logit_scale_cap is not None:
        scale = scale.clamp(max=row.logit_scale_cap)
    if row.sigmoid:
        return sigmoid_loss(torch, image_emb, text_emb, groups, scale, model.logit_bias)
    return contrastive_loss(torch, image_emb, text_emb, groups, scale)


def _zero_shot_top1(torch: Any, model: Any, text_side: _TextSide, pixels: np.ndarray, labels: np.ndarray,
                    prompts: list[list[str]]) -> float:
    """Top-1 accuracy of ``pixels`` against class prompt ensembles, with the model being trained."""
    model.eval()
    with torch.inference_mode():
        flat = [p for per_class in prompts for p in per_class]
        text = text_side.embed(torch, model, flat)
        text = torch.nn.functional.normalize(text.view(len(prompts), -1, text.shape[-1]).mean(1), dim=-1)
        correct = 0
        for start in range(0, len(pixels), 512):
            batch = torch.from_numpy(pixels[start:start + 512])
            image = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=batch)), dim=-1)
            correct += int((image @ text.t()).argmax(1).eq(torch.from_numpy(labels[start:start + 512])).sum())
    model.train()
    return correct / len(pixels)


def train_clip(
    data: TrainData,
    out: str | os.PathLike[str],
    *,
    base: str | None = None,
    config: str = "tiny",
    tokenizer: str | os.PathLike[str] | None = None,
    options: TrainOptions | None = None,
    eval_folder: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> TrainReport:
    """Train a CLIP-family model on ``data`` and save a Hugging Face checkpoint directory to ``out``.

    ``base``: a registry name or checkpoint directory to fine-tune, of family clip, chinese_clip or siglip
    (its model class, tokenizer, text padding, preprocessing and loss are kept); without it a new CLIP
    model of size ``config`` is trained from scratch with ``tokenizer`` (a directory holding a tokenizer)
    and the training images' own per-channel mean/std.
    ``eval_folder``: an ImageFolder scored zero-shot after every epoch (the report's ``eval_top1``).
    """
    opts = options or TrainOptions()
    if opts.max_steps is not None and opts.max_steps < 0:
        raise UserInputError(f"max_steps must be >= 0 (0 saves the initial model), got {opts.max_steps}")
    if opts.epochs < 1 or opts.batch_size < 2 or opts.lr <= 0:
        raise UserInputError(
            f"need epochs >= 1, batch size >= 2 and lr > 0; got {opts.epochs}, {opts.batch_size}, {opts.lr}"
        )
    out_dir = Path(out).expanduser()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserInputError(f"{out} exists and is not empty; choose a new output directory")
    if len(data.paths) < 2:
        raise UserInputError(f"need at least 2 training images, found {len(data.paths)}")
    torch, transformers = _import_torch()
    transformers.utils.logging.disable_progress_bar()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    random.seed(opts.seed)

    if base is not None:
        from glimpse.registry import load_spec, resolve_model_dir

        spec = load_spec(base)
        if spec.family not in FAMILIES:
            raise UserInputError(f"fine-tuning supports families {sorted(FAMILIES)}; {base} is {spec.family!r}")
        class_name = FAMILIES[spec.family].model_class
        base_dir = resolve_model_dir(base)
        try:
            model = getattr(transformers, class_name).from_pretrained(str(base_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load {base} as a {class_name} to fine-tune ({exc}); pass a transformers "
                             "checkpoint directory or registry name (not an ONNX export)") from exc
        context_length = spec.context_length
        tok = _load_tokenizer(transformers, tokenizer or base_dir, context_length)
        text_side = _TextSide(tok, spec.family, context_length, spec.text_padding)
        pre = spec.preprocess
        processor_source: Path | None = base_dir / "preprocessor_config.json"
        size_info: dict[str, Any] = {"base": str(base)}
    else:
        if tokenizer is None:
            tokenizer = _default_tokenizer_dir()
        from glimpse.datasets import channel_stats

        context_length = int(SIZE_CONFIGS.get(config, {}).get("text", {}).get("max_position_embeddings", 77))
        tok = _load_tokenizer(transformers, tokenizer, context_length)
        model, image_size = _new_model(transformers, tok, config)
        scratch = FAMILIES[DEFAULT_FAMILY]  # _new_model builds a CLIPModel
        text_side = _TextSide(tok, scratch.name, context_length, scratch.text_padding)
        # From scratch, normalise with the data's own statistics (streamed, so any folder size works).
        stats = _stats_of(data.paths, image_size, channel_stats)
        pre = _preprocess_for(image_size, stats[0], stats[1])
        processor_source = None
        size_info = {"config": config, **SIZE_CONFIGS[config]}

    log(f"loading {len(data.paths)} training images at {pre.height}x{pre.width}")
    pixels = _load_pixels(data.paths, pre, log)
    groups = torch.tensor(data.groups, dtype=torch.long)
    eval_set = None
    if eval_folder is not None:
        eval_set = _eval_set(eval_folder, pre, opts.templates, log)

    steps_per_epoch = max(1, len(pixels) // opts.batch_size)
    total_steps = steps_per_epoch * opts.epochs
    if opts.max_steps is not None:
        total_steps = min(total_steps, opts.max_steps)
    warmup = max(1, int(total_steps * opts.warmup))
    optimizer = torch.optim.AdamW(_param_groups(model, opts.weight_decay), lr=opts.lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    generator = torch.Generator().manual_seed(opts.seed)
    pad = max(1, pre.height // 8)
    model.train()
    step, start = 0, time.perf_counter()
    step_losses: list[float] = []
    epoch_losses: list[float] = []
    eval_top1: list[float] = []
    pixels_t = torch.from_numpy(pixels)
    for epoch in range(opts.epochs):
        order = torch.randperm(len(pixels), generator=generator)
        losses = []
        for b in range(steps_per_epoch):
            if step >= total_steps:
                break
            idx = order[b * opts.batch_size:(b + 1) * opts.batch_size]
            batch = pixels_t[idx]
            if opts.augment:
                batch = _augment(torch, batch, generator, pad)
            # One random caption per sample; each distinct caption is encoded once per step.
            chosen = [random.choice(data.captions[i]) for i in idx.tolist()]
            unique = sorted(set(chosen))
            where = torch.tensor([unique.index(c) for c in chosen])
            image_emb = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=batch)), dim=-1)
            text_emb = text_side.embed(torch, model, unique)[where]
            loss = _batch_loss(torch, model, text_side.family, image_emb, text_emb, groups[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            cap = get_family(text_side.family).logit_scale_cap
            if cap is not None:
                # CLIP caps its temperature at 100; SigLIP has no cap (its pretrained scales may exceed 100).
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(cap))
            value = float(loss.detach())
            losses.append(value)
            step_losses.append(value)
            step += 1
        if not losses:
            break
        epoch_losses.append(float(np.mean(losses)))
        message = f"epoch {epoch + 1}/{opts.epochs}: loss {epoch_losses[-1]:.4f}, {time.perf_counter() - start:.0f} s"
        if eval_set is not None:
            eval_top1.append(_zero_shot_top1(torch, model, text_side, *eval_set))
            message += f", zero-shot top-1 {eval_top1[-1]:.3f}"
        log(message)
        if step >= total_steps:
            break
    seconds = time.perf_counter() - start
    _save(transformers, model.eval(), tok, pre, out_dir, processor_source)
    report = TrainReport(str(out_dir), len(pixels), len(set(data.groups)), step, len(epoch_losses), seconds,
                         epoch_losses, step_losses, eval_top1, {**size_info, "options": asdict(opts)})
    (out_dir / REPORT_FILENAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def _stats_of(paths: Sequence[str], image_size: int, channel_stats: Callable[..., Any]) -> tuple[Any, Any]:
    """Mean/std over the training images (one shared parent folder streamed by ``channel_stats``)."""
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    stats = channel_stats(root, size=image_size)
    return stats.mean, stats.std


def _eval_set(folder: str | os.PathLike[str], pre: Any, templates: str,
              log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    from glimpse.datasets import read_image_folder
    from glimpse.templates import fill, load_templates

    data = read_image_folder(folder)
    log(f"loading {len(data)} evaluation images")
    prompts = [fill(load_templates(templates), name) for name in data.class_names()]
    return _load_pixels(data.paths, pre, log), np.asarray(data.labels, dtype=np.int64), prompts


def _save(transformers: Any, model: Any, tokenizer: Any, pre: Any, out_dir: Path,
          processor_source: Path | None) -> None:
    """Write config + safetensors weights, tokenizer files and the image processor config.

    A fine-tuned model keeps its base's processor config byte for byte (same preprocessing as trained).
    """
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    if processor_source is not None and processor_source.is_file():
        shutil.copyfile(processor_source, out_dir / "preprocessor_config.json")
        return
    transformers.CLIPImageProcessorPil(
        size={"shortest_edge": pre.shortest_edge or pre.height},
        crop_size={"height": pre.height, "width": pre.width},
        do_center_crop=True,
        resample=3,  # bicubic
        image_mean=list(pre.mean),
        image_std=list(pre.std),
    ).save_pretrained(str(out_dir))
