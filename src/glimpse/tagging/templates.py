"""Prompt-template ensembles: a tag name becomes several sentences, each embedded by a CLIP text tower.

Averaging (or, for RAM++, re-weighting per image) the embeddings of many phrasings of the same tag is more
robust than one prompt: "a photo of a {}" alone favours objects, and misses scenes and actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import Progress

# Written for glimpse: varied framing (photo, picture, close-up, scene), quality and context words.
TAG_TEMPLATES: tuple[str, ...] = (
    "a photo of {article} {}.",
    "a photo of the {}.",
    "a picture showing {article} {}.",
    "an image that contains {article} {}.",
    "a close-up photo of the {}.",
    "a blurry photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a cropped photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a snapshot with {article} {} in it.",
    "there is {article} {} in this scene.",
    "a good photo of the {}.",
    "a photo of many {}.",
    "a black and white photo of the {}.",
    "a painting of {article} {}.",
)

# Chinese-speaking CLIP-family models (Chinese-CLIP, multilingual SigLIP) read these for Chinese names.
TAG_TEMPLATES_ZH: tuple[str, ...] = (
    "一张{}的照片。",
    "这张图片里有{}。",
    "{}的特写照片。",
    "一张模糊的{}的照片。",
    "一张明亮的{}的照片。",
    "画面中可以看到{}。",
    "一幅{}的画。",
    "一张有很多{}的照片。",
)


def article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


def prompts(name: str, templates: Sequence[str] = TAG_TEMPLATES) -> list[str]:
    """The sentences of one tag name (``_`` read as a space)."""
    clean = name.replace("_", " ").strip()
    return [t.format(clean, article=article(clean)) for t in templates]


def embed_labels(encoder: Encoder, names: Sequence[str], templates: Sequence[str] = TAG_TEMPLATES,
                 batch: int = 512, progress: Progress | None = None) -> np.ndarray:
    """``float32[n, T, d]``: each name's prompt embeddings (L2-normalised rows), ``T = len(templates)``.

    ``progress`` counts the prompts encoded.
    """
    texts = [p for name in names for p in prompts(name, templates)]
    if progress is not None:
        progress.start(len(texts))
    parts = []
    try:
        for i in range(0, len(texts), batch):
            parts.append(encoder.encode_texts(texts[i : i + batch]))
            if progress is not None:
                progress.advance(len(parts[-1]))
    finally:
        if progress is not None:
            progress.finish()
    flat = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), dtype=np.float32)
    return flat.reshape(len(names), len(templates), -1)


def ensemble(embeddings: np.ndarray) -> np.ndarray:
    """``float32[n, T, d]`` -> ``float32[n, d]``: the normalised mean over templates."""
    mean = embeddings.mean(axis=1)
    return (mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)).astype(np.float32)
