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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError
from glimpse.families import get_family
from glimpse.templates import ensemble, fill, load_templates

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import Progress
    from glimpse.spec import ModelSpec

CACHE_DIRNAME = "cache"


class TextCache:
    """On-disk cache of text embeddings of one model key: ``<directory>/<key>.npz`` (texts + vectors).

    ``directory=None`` keeps the cache in memory only. Texts are encoded in chunks of ``CHUNK``, each saved
    as it is done in ``<directory>/<key>.parts/`` (written to a temporary file, then renamed into place), so
    a killed run keeps every finished chunk and the next run encodes only the rest; when all texts of a call
    are in, the parts are merged into ``<key>.npz`` (again by rename). No kill leaves a damaged cache.
    """

    CHUNK = 256  # texts per saved part: a B/32 encodes this many in a few seconds on a CPU

    def __init__(self, directory: str | os.PathLike[str] | None, model_key: str) -> None:
        self.path = Path(directory) / f"{_safe(model_key)}.npz" if directory is not None else None
        self._vectors: dict[str, np.ndarray] = {}
        self._parts: list[Path] = []  # part files read into _vectors (or unreadable): the next merge drops them
        if self.path is not None:
            self._load(self.path)
            for part in self.part_files():
                self._load(part)
                self._parts.append(part)
            _remove_orphaned_temporaries(self.path.parent, f".{self.path.stem}.*.tmp")
            _remove_orphaned_temporaries(self.parts_dir, ".*.tmp")

    @property
    def parts_dir(self) -> Path | None:
        """Where chunks finished since the last merge are kept (``None`` for a memory-only cache)."""
        return self.path.with_suffix(".parts") if self.path is not None else None

    def part_files(self) -> list[Path]:
        """The saved chunks not yet merged into the main file, oldest first."""
        parts = self.parts_dir
        return sorted(parts.glob("*.npz")) if parts is not None and parts.is_dir() else []

    def _load(self, path: Path) -> None:
        # A damaged cache is only a cache: start again rather than fail.
        with contextlib.suppress(Exception), np.load(path, allow_pickle=False) as data:
            self._vectors.update(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def encode(self, encoder: Encoder, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """``float32[len(texts), d]`` L2-normalised; only texts not seen before reach the encoder.

        ``progress`` counts the texts encoded (it is not started when every text is already cached).
        """
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            if progress is not None:
                progress.start(len(missing))
            try:
                for start in range(0, len(missing), self.CHUNK):
                    chunk = missing[start : start + self.CHUNK]
                    vectors = encoder.encode_texts(chunk)
                    self._vectors.update(zip(chunk, vectors, strict=True))
                    self._save_part(chunk, vectors)
                    if progress is not None:
                        progress.advance(len(chunk))
            finally:
                if progress is not None:
                    progress.finish()
        if self._parts:
            self._merge()
        if not texts:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)

    def _save_part(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        if self.parts_dir is None:
            return
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        part = self.parts_dir / f"{time.time_ns():020d}-{os.getpid()}.npz"
        _write_npz(part, list(texts), vectors)
        self._parts.append(part)

    def _merge(self) -> None:
        """Fold the saved parts into the main file, then drop them (a kill in between only leaves duplicates)."""
        if self.path is None:
            return
        texts = list(self._vectors)
        _write_npz(self.path, texts, np.stack([self._vectors[t] for t in texts]))
        for part in self._parts:
            part.unlink(missing_ok=True)
        self._parts = []
        with contextlib.suppress(OSError):
            self.parts_dir.rmdir()  # type: ignore[union-attr]  # only when empty (another process may be writing)


def _write_npz(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    """Write ``texts`` + ``float32[n, d]`` vectors to ``path`` atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to the temporary name
        np.savez(handle, texts=np.asarray(texts, dtype=str), vectors=np.asarray(vectors, dtype=np.float32))
    os.replace(tmp, path)


def _remove_orphaned_temporaries(directory: Path | None, pattern: str) -> None:
    """Delete temporary files of killed writers: ``pattern`` names ``.<stem>.<pid>.tmp`` files (``_write_npz``)."""
    if directory is None or not directory.is_dir():
        return
    for tmp in directory.glob(pattern):
        pid = tmp.name.removesuffix(".tmp").rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):  # e.g. a read-only library: the leftover is only clutter
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def _safe(key: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_." else "-" for c in key)
    return clean if clean == key else f"{clean}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def text_cache_for(library_dir: str | os.PathLike[str] | None, model_key: str) -> TextCache:
    """The text cache of ``model_key`` inside a library directory (memory-only when ``None``)."""
    return TextCache(_text_dir(library_dir) if library_dir is not None else None, model_key)


def _text_dir(library_dir: str | os.PathLike[str]) -> Path:
    return Path(library_dir) / CACHE_DIRNAME / "text"


def move_text_cache(library_dir: str | os.PathLike[str], old_key: str, new_key: str) -> bool:
    """Rename the text cache of ``old_key`` (main file and unmerged parts) to ``new_key``: the same model under
    a new key. Only when ``new_key`` has no cache yet, so nothing is overwritten; False when nothing moved."""
    directory = _text_dir(library_dir)
    old, new = directory / f"{_safe(old_key)}.npz", directory / f"{_safe(new_key)}.npz"
    old_parts, new_parts = old.with_suffix(".parts"), new.with_suffix(".parts")
    if new.exists() or new_parts.exists() or not (old.exists() or old_parts.exists()):
        return False
    if old.exists():
        os.replace(old, new)
    if old_parts.exists():
        os.replace(old_parts, new_parts)
    return True


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
    return ensemble(vectors.reshape(len(labels), len(templates), -1))


@dataclass(frozen=True)
class Calibration:
    """How cosine similarities become probabilities for one model."""

    scale: float
    bias: float | None
    sigmoid: bool

    @classmethod
    def of(cls, spec: ModelSpec) -> Calibration:
        """The calibration of ``spec``: its family's loss decides softmax or sigmoid (``families.ModelFamily.loss``)."""
        return cls(float(spec.logit_scale), spec.logit_bias, get_family(spec.family).sigmoid)

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
