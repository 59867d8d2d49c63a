"""Zero-shot classification: class names x prompt templates -> class embeddings -> probabilities.

Each class's prompts are encoded, averaged and renormalised (CLIP's prompt ensembling). Scores use the
model's own calibration: CLIP/Chinese-CLIP ``softmax(logit_scale * cos)`` over the classes; SigLIP,
trained with a sigmoid loss, ``sigmoid(logit_scale * cos + logit_bias)`` per class (independent
probabilities that need not sum to 1). Prompt embeddings are cached on disk per model key, so a second
run with the same labels encodes no text at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.encoders.base import l2_normalize
from glimpse.errors import UserInputError
from glimpse.templates import fill, load_templates

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.spec import ModelSpec

CACHE_DIRNAME = "cache"


class TextCache:
    """On-disk cache of text embeddings of one model key: ``<directory>/<key>.npz`` (texts + vectors).

    ``directory=None`` keeps the cache in memory only. Writes go to a temporary file renamed into place,
    so a killed process never leaves a half-written cache.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, model_key: str) -> None:
        self.path = Path(directory) / f"{_safe(model_key)}.npz" if directory is not None else None
        self._vectors: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            # A damaged cache is only a cache: start again rather than fail.
            with contextlib.suppress(Exception), np.load(self.path, allow_pickle=False) as data:
                self._vectors = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def encode(self, encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
        """``float32[len(texts), d]`` L2-normalised; only texts not seen before reach the encoder."""
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            for text, vector in zip(missing, encoder.encode_texts(missing), strict=True):
                self._vectors[text] = vector
            self._save()
        if not texts:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self._vectors)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, texts=np.asarray(texts, dtype=str), vectors=np.stack([self._vectors[t] for t in texts]))
        os.replace(tmp, self.path)


def _safe(key: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_." else "-" for c in key)
    return clean if clean == key else f"{clean}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def text_cache_for(library_dir: str | os.PathLike[str] | None, model_key: str) -> TextCache:
    """The text cache of ``model_key`` inside a library directory (memory-only when ``None``)."""
    directory = Path(library_dir) / CACHE_DIRNAME / "text" if library_dir is not None else None
    return TextCache(directory, model_key)


def parse_labels(labels: str | None = None, labels_file: str | os.PathLike[str] | None = None) -> list[str]:
    """Labels from ``"a,b,c"`` or a file with one label per line (blank lines and ``#`` comments skipped)."""
    if (labels is None) == (labels_file is None):
        raise UserInputError("give the classes with exactly one of --labels a,b,c or --labels-file FILE")
    if labels_file is not None:
        try:
            text = Path(labels_file).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read labels file {labels_file} ({exc})") from exc
        items = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    else:
        items = [item.strip() for item in str(labels).split(",") if item.strip()]
    if len(items) < 2:
        raise UserInputError(f"zero-shot classification needs at least 2 labels, got {items}")
    duplicates = sorted({x for x in items if items.count(x) > 1})
    if duplicates:
        raise UserInputError(f"labels must be distinct; repeated: {', '.join(duplicates)}")
    return items


def class_embeddings(encoder: Encoder, labels: Sequence[str], templates: Sequence[str],
                     cache: TextCache | None = None) -> np.ndarray:
    """``float32[len(labels), d]``: per label, the renormalised mean of its prompts' embeddings."""
    prompts = [p for label in labels for p in fill(list(templates), label)]
    vectors = (cache or TextCache(None, encoder.key)).encode(encoder, prompts)
    per_class = vectors.reshape(len(labels), len(templates), -1).mean(axis=1)
    return l2_normalize(per_class)


@dataclass(frozen=True)
class Calibration:
    """How cosine similarities become probabilities for one model."""

    scale: float
    bias: float | None
    sigmoid: bool

    @classmethod
    def of(cls, spec: ModelSpec) -> Calibration:
        return cls(float(spec.logit_scale), spec.logit_bias, spec.family == "siglip")

    def probabilities(self, cosine: np.ndarray) -> np.ndarray:
        """``float32[n, c]`` probabilities of ``float32[n, c]`` cosine similarities."""
        logits = cosine.astype(np.float64) * self.scale
        if self.sigmoid:
            return (1.0 / (1.0 + np.exp(-(logits + (self.bias or 0.0))))).astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)  # stable softmax
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class ZeroShotClassifier:
    """Labels with their class embeddings ``weights`` (``float32[c, d]``) and the model's calibration."""

    labels: list[str]
    weights: np.ndarray
    calibration: Calibration
    model_key: str

    @classmethod
    def build(cls, encoder: Encoder, labels: Sequence[str], templates: str | Sequence[str] | None = None,
              cache: TextCache | None = None) -> ZeroShotClassifier:
        """Classifier for ``labels`` with a template set name/file (default ``short``) or a template list."""
        if templates is None or isinstance(templates, str):
            templates = load_templates(templates)
        if len(labels) < 2:
            raise UserInputError(f"zero-shot classification needs at least 2 labels, got {list(labels)}")
        weights = class_embeddings(encoder, labels, templates, cache)
        return cls(list(labels), weights, Calibration.of(encoder.spec), encoder.key)

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """``float32[n, c]`` class probabilities of L2-normalised image vectors ``float32[n, d]``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.weights.shape[1]:
            raise UserInputError(
                f"image vectors must be [n, {self.weights.shape[1]}] of model {self.model_key}, "
                f"got {list(vectors.shape)}"
            )
        return self.calibration.probabilities(vectors @ self.weights.T)

    def predict(self, vectors: np.ndarray, k: int = 5) -> list[list[dict[str, Any]]]:
        """Per image, the ``k`` best ``{"label", "score"}`` (score = probability), best first."""
        return top_k(self.probabilities(vectors), self.labels, k)


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
    """Per row of ``float[n, c]`` scores, the ``k`` best ``{"label", "score"}``, best first (stable on ties)."""
    if k < 1:
        raise UserInputError(f"top-k must be at least 1, got {k}")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": round(float(row[j]), 6)} for j in idx]
            for row, idx in zip(scores, order, strict=True)]
