"""Open-vocabulary tagging with any CLIP-family encoder: no RAM weights needed.

Each vocabulary tag is embedded as a prompt-template ensemble (``glimpse.templates``); an image's cosine
similarity to every tag is turned into a probability by how far it stands out among all tags of the vocabulary
for that image: ``p = sigmoid((sim - mean) / std - OFFSET)`` (mean/std over the vocabulary, per image). Raw CLIP
similarities sit in a narrow band that shifts from image to image, so a fixed cut on them does not transfer;
the standardised score does, and per-tag thresholds calibrated on labelled examples refine it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from glimpse.tagging.base import Tagger, Vocabulary
from glimpse.tagging.vocab import load_vocabulary
from glimpse.templates import TAG_TEMPLATES, TAG_TEMPLATES_ZH, embed_labels, ensemble, prompts

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import Progress
    from glimpse.zeroshot import TextCache

# A tag must stand this many standard deviations above the vocabulary mean to reach probability 0.5.
OFFSET = 3.0
_TEXT_CACHE: dict[str, np.ndarray] = {}  # vocabulary embeddings per (model key, names, templates)


def clip_source(model_key: str) -> str:
    """The tag source (``tags.source`` in the catalog) of the CLIP tagger of model ``model_key``."""
    return f"clip:{model_key}"


class ClipTagger(Tagger):
    """Scores ``float32[n, 3, H, W]`` pixels against a vocabulary with a CLIP-family ``Encoder``."""

    def __init__(self, encoder: Encoder, vocab: Vocabulary | None = None, *,
                 open_set: Sequence[str] = (), open_threshold: float | None = None,
                 cache: TextCache | None = None, progress: Progress | None = None) -> None:
        """``progress`` counts the vocabulary prompts encoded (minutes on a CPU the first time; nothing when
        they are cached)."""
        self.encoder = encoder
        self.cache = cache  # on-disk prompt embeddings: 2,000 tags x 16 templates take minutes on a CPU
        vocab = vocab or load_vocabulary()
        extra = [n.strip() for n in open_set if n.strip() and vocab.index_of(n.strip()) is None]
        if extra:
            cut = np.float32(open_threshold if open_threshold is not None else 0.5)
            vocab = Vocabulary(vocab.names + extra, np.concatenate([vocab.thresholds, np.full(len(extra), cut)]),
                               (vocab.chinese + extra) if vocab.chinese else None,
                               (vocab.categories + ["object"] * len(extra)) if vocab.categories else None,
                               open_set=np.concatenate([vocab.open_set, np.ones(len(extra), dtype=bool)]))
        self.vocab = vocab
        self.preprocess = encoder.spec.preprocess
        self.source = clip_source(encoder.key)
        self.text = self._embed_vocabulary(progress)  # float32[C, d]

    def _embed_vocabulary(self, progress: Progress | None = None) -> np.ndarray:
        spec = self.encoder.spec
        names, templates = self.vocab.names, TAG_TEMPLATES
        # A model that reads no English (Chinese-CLIP variants) gets the Chinese names and templates.
        if "en" not in spec.languages and "zh" in spec.languages and self.vocab.chinese:
            names, templates = [zh.split("/")[0] for zh in self.vocab.chinese], TAG_TEMPLATES_ZH
        # Thousands of tags x templates take a while on CPU: embed once per (model, names, templates).
        key = hashlib.sha256(json.dumps([self.encoder.key, names, templates], ensure_ascii=False).encode()).hexdigest()
        if key not in _TEXT_CACHE:
            if self.cache is None:
                embedded = embed_labels(self.encoder, names, templates, progress=progress)
            else:
                texts = [p for name in names for p in prompts(name, templates)]
                embedded = self.cache.encode(self.encoder, texts, progress).reshape(len(names), len(templates), -1)
            _TEXT_CACHE[key] = ensemble(embedded)
        return _TEXT_CACHE[key]

    def similarities(self, pixels: np.ndarray) -> np.ndarray:
        """Cosine similarities ``float32[n, C]`` of images to tags."""
        return self.encoder.encode_pixels(pixels) @ self.text.T

    def score_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Probabilities ``float32[n, C]`` from L2-normalised image embeddings ``float32[n, d]``."""
        return self.probabilities(np.asarray(vectors, dtype=np.float32) @ self.text.T)

    @staticmethod
    def probabilities(sims: np.ndarray) -> np.ndarray:
        mean = sims.mean(axis=1, keepdims=True)
        std = np.maximum(sims.std(axis=1, keepdims=True), 1e-6)
        z = (sims - mean) / std - OFFSET
        return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)

    def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.probabilities(self.similarities(pixels))
