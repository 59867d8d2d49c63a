"""Few-shot classifiers on stored embeddings, in numpy: a linear probe and a prototype (class-mean) classifier.

A probe file (``.glimpse``, an ``.npz`` inside) carries the model key of the embeddings it was trained on;
using it with another model is refused, since its weights would be meaningless there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glimpse.encoders.base import l2_normalize
from glimpse.errors import IndexMismatchError, UserInputError

ProbeKind = Literal["linear", "prototype"]
PROBE_FORMAT = 1


@dataclass
class Probe:
    """``probabilities(x) = softmax(x @ weights.T + bias)`` for L2-normalised ``x: float32[n, d]``.

    ``weights``: ``float32[c, d]``, ``bias``: ``float32[c]``. A prototype probe's weights are the
    normalised class means times a fixed temperature (cosine to the prototypes, softmaxed).
    """

    kind: ProbeKind
    labels: list[str]
    weights: np.ndarray
    bias: np.ndarray
    model_key: str
    model_name: str = ""

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """``float32[n, c]`` class probabilities."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.weights.shape[1]:
            raise UserInputError(f"vectors must be [n, {self.weights.shape[1]}], got {list(vectors.shape)}")
        return _softmax(vectors @ self.weights.T + self.bias)

    def check_model(self, model_key: str) -> None:
        """Refuse embeddings of another model than the one the probe was trained on."""
        if model_key != self.model_key:
            raise IndexMismatchError(
                f"the probe was trained on embeddings of {self.model_name or self.model_key} (key {self.model_key}), "
                f"but the model in use has key {model_key}; use --model {self.model_name or '<that model>'} "
                "or train a new probe"
            )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the probe to ``path`` (npz format, whatever the extension)."""
        path = Path(path).expanduser()
        meta = {"format": PROBE_FORMAT, "kind": self.kind, "labels": self.labels, "model_key": self.model_key,
                "model_name": self.model_name}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:  # a file handle: np.savez would append .npz to the name
            np.savez(handle, meta=np.asarray(json.dumps(meta)), weights=self.weights, bias=self.bias)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Probe:
        try:
            with np.load(Path(path).expanduser(), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                weights, bias = data["weights"].astype(np.float32), data["bias"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise UserInputError(f"{path} is not a glimpse probe file ({exc}); create one with `glimpse train probe`") \
                from exc
        if meta.get("format", 0) > PROBE_FORMAT:
            raise UserInputError(f"{path} has probe format {meta['format']}; upgrade glimpse to read it")
        return cls(meta["kind"], list(meta["labels"]), weights, bias, meta["model_key"], meta.get("model_name", ""))


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _check(vectors: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> None:
    if vectors.ndim != 2 or len(vectors) != len(labels) or len(vectors) == 0:
        raise UserInputError(f"need [n, d] vectors with n labels, got {list(vectors.shape)} and {len(labels)} labels")
    present = set(np.unique(labels).tolist())
    if len(present) < 2:
        raise UserInputError(f"a probe needs examples of at least 2 classes, found {len(present)}")
    if min(present) < 0 or max(present) >= len(names):
        raise UserInputError(f"labels must be class indices in 0..{len(names) - 1}")


PROTOTYPE_TEMPERATURE = 100.0  # the same sharpness CLIP's logit scale gives zero-shot cosine scores


def train_prototype(vectors: np.ndarray, labels: np.ndarray, names: Sequence[str], model_key: str,
                    model_name: str = "") -> Probe:
    """Nearest-class-mean classifier: weights = temperature x normalised mean vector of each class."""
    vectors, labels = np.asarray(vectors, dtype=np.float32), np.asarray(labels, dtype=np.int64)
    _check(vectors, labels, names)
    means = np.zeros((len(names), vectors.shape[1]), dtype=np.float32)
    for c in range(len(names)):
        members = vectors[labels == c]
        if len(members):
            means[c] = members.mean(axis=0)
    weights = l2_normalize(means) * PROTOTYPE_TEMPERATURE
    # A class without examples can never win: its bias is far below any cosine logit.
    bias = np.where(np.bincount(labels, minlength=len(names)) > 0, 0.0, -1e4).astype(np.float32)
    return Probe("prototype", list(names), weights.astype(np.float32), bias, model_key, model_name)


def train_linear(vectors: np.ndarray, labels: np.ndarray, names: Sequence[str], model_key: str,
                 model_name: str = "", *, l2: float = 1e-4, epochs: int = 300, lr: float = 0.05,
                 seed: int = 0) -> Probe:
    """Multinomial logistic regression (softmax + L2 penalty ``l2 * |W|^2``) fitted by full-batch Adam.

    Features are centred and scaled to unit mean norm before fitting (CLIP embeddings share a large common
    direction, which would otherwise need huge weights to separate); the centring and scale are folded
    back into ``weights``/``bias``, so the saved probe applies to raw L2-normalised vectors. Deterministic
    for a given ``seed``.
    """
    raw, y = np.asarray(vectors, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    _check(raw.astype(np.float32), y, names)
    mu = raw.mean(axis=0)
    scale = float(np.linalg.norm(raw - mu, axis=1).mean()) or 1.0
    x = (raw - mu) / scale
    n, d = x.shape
    c = len(names)
    onehot = np.zeros((n, c))
    onehot[np.arange(n), y] = 1.0
    rng = np.random.default_rng(seed)
    w = rng.normal(scale=0.01, size=(c, d))
    b = np.zeros(c)
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        probs = _softmax(x @ w.T + b).astype(np.float64)
        grad_logits = (probs - onehot) / n
        g_w = grad_logits.T @ x + 2 * l2 * w
        g_b = grad_logits.sum(axis=0)
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w**2
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b**2
        correction1, correction2 = 1 - beta1**t, 1 - beta2**t
        w -= lr * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= lr * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
    # W (x - mu) / s + b  ==  (W / s) x + (b - W mu / s)
    w, b = w / scale, b - (w @ mu) / scale
    return Probe("linear", list(names), w.astype(np.float32), b.astype(np.float32), model_key, model_name)


def train_probe(vectors: np.ndarray, labels: np.ndarray, names: Sequence[str], model_key: str,
                model_name: str = "", kind: ProbeKind = "linear", **options: Any) -> Probe:
    """Fit a ``linear`` or ``prototype`` probe on ``float32[n, d]`` vectors with ``int[n]`` class labels."""
    if kind == "linear":
        return train_linear(vectors, labels, names, model_key, model_name, **options)
    if kind == "prototype":
        return train_prototype(vectors, labels, names, model_key, model_name)
    raise UserInputError(f"unknown probe kind {kind!r}; choose linear or prototype")
