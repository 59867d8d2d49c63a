"""What every tagger shares: the tag vocabulary it scores, and turning scores into tags.

A tagger maps preprocessed pixels ``float32[n, 3, H, W]`` to probabilities ``float32[n, C]`` in [0, 1], one
column per vocabulary entry; ``select`` applies thresholds (per class, or one global value that overrides
them all), exclusions and a "score only these" list, in one place for the CLIP and the RAM tagger.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from PIL import Image

    from glimpse.spec import Preprocess


def split_chinese(entry: str) -> tuple[str, tuple[str, ...]]:
    """``"胡同/球道"`` -> ``("胡同", ("球道",))``: the first synonym is shown, the rest are aliases."""
    parts = [p.strip() for p in entry.split("/") if p.strip()]
    if not parts:
        return "", ()
    return parts[0], tuple(parts[1:])


@dataclass(frozen=True)
class Tag:
    """One predicted tag. ``score`` is a probability in [0, 1]; ``threshold`` the cut it passed."""

    name: str
    score: float
    threshold: float
    index: int
    name_zh: str | None = None
    aliases_zh: tuple[str, ...] = ()
    category: str | None = None
    open_set: bool = False

    def to_dict(self, languages: Sequence[str] = ("en",)) -> dict[str, Any]:
        data: dict[str, Any] = {"tag": self.name, "score": round(float(self.score), 6),
                                "threshold": round(float(self.threshold), 6)}
        if "zh" in languages:
            data["zh"] = self.name_zh
            if self.aliases_zh:
                data["zh_aliases"] = list(self.aliases_zh)
        if self.category:
            data["category"] = self.category
        if self.open_set:
            data["open_set"] = True
        return data


@dataclass
class Vocabulary:
    """The columns a tagger scores: English names, optional Chinese names/categories, per-class thresholds."""

    names: list[str]
    thresholds: np.ndarray  # float32[C]
    chinese: list[str] | None = None  # raw entries; "/" separates synonyms
    categories: list[str] | None = None
    open_set: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # bool[C]

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, dtype=np.float32)
        if len(self.open_set) != len(self.names):
            self.open_set = np.zeros(len(self.names), dtype=bool)
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int | None:
        """Column of a tag given by English name, Chinese name/alias, or ``#index``; case-insensitive."""
        if self._index is None:
            index: dict[str, int] = {}
            for i, en in enumerate(self.names):
                index.setdefault(en.lower(), i)
            for i, zh in enumerate(self.chinese or []):
                for part in zh.split("/"):
                    if part.strip():
                        index.setdefault(part.strip(), i)
            self._index = index
        key = name.strip()
        if key.startswith("#") and key[1:].isdigit():
            i = int(key[1:])
            return i if 0 <= i < len(self.names) else None
        return self._index.get(key.lower(), self._index.get(key))

    def resolve(self, names: Iterable[str], what: str) -> list[int]:
        """Columns of ``names``; an unknown name is a user error naming it."""
        out = []
        for name in names:
            i = self.index_of(name)
            if i is None:
                raise UserInputError(
                    f"{what}: {name!r} is not in the tagger's vocabulary of {len(self)} tags; check the spelling "
                    "(English or Chinese name, or #index), or add it with --open-set"
                )
            out.append(i)
        return out

    def tag(self, i: int, score: float, threshold: float) -> Tag:
        zh, aliases = split_chinese(self.chinese[i]) if self.chinese else (None, ())
        return Tag(self.names[i], float(score), float(threshold), i, zh, aliases,
                   self.categories[i] if self.categories else None, bool(self.open_set[i]))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities ``float32`` of logits (computed in float64 so large logits neither overflow nor round to 1)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


def check_threshold(value: float | None, what: str = "--threshold") -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise UserInputError(f"{what} must be a probability between 0 and 1, got {value}")


def select(scores: np.ndarray, vocab: Vocabulary, *, threshold: float | None = None,
           exclude: Sequence[str] = (), only: Sequence[str] | None = None,
           open_threshold: float | None = None) -> list[list[Tag]]:
    """Tags per image from probabilities ``float32[n, C]``, best first.

    ``threshold`` (one global value) overrides every per-class threshold — unlike the reference scripts,
    where a threshold argument was silently replaced by the per-class file. ``open_threshold`` applies to
    open-set columns (default: their own thresholds). ``exclude`` drops tags (the reference's
    ``delete_tag_index``); ``only`` scores just the named tags (the reference's specified ``tag_input``).
    """
    check_threshold(threshold)
    check_threshold(open_threshold, "the open-set threshold")
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(vocab):
        raise UserInputError(f"scores must have shape [n, {len(vocab)}], got {list(scores.shape)}")
    cut = vocab.thresholds.copy() if threshold is None else np.full(len(vocab), threshold, dtype=np.float32)
    if open_threshold is not None:
        cut[vocab.open_set] = open_threshold
    allowed = np.ones(len(vocab), dtype=bool)
    if only is not None:
        allowed[:] = False
        allowed[vocab.resolve(only, "--only")] = True
    allowed[vocab.resolve(exclude, "--exclude-tags")] = False
    # Strictly greater, as the reference (sigmoid(logits) > class_threshold).
    hits = (scores > cut[None, :]) & allowed[None, :]
    results = []
    for row, mask in zip(scores, hits, strict=True):
        cols = np.flatnonzero(mask)
        cols = cols[np.argsort(-row[cols], kind="stable")]
        results.append([vocab.tag(int(i), float(row[i]), float(cut[i])) for i in cols])
    return results


class Tagger(ABC):
    """Scores images against a vocabulary. ``source`` names the tagger and its model (stored with tags)."""

    vocab: Vocabulary
    preprocess: Preprocess
    source: str
    legacy_source: str | None = None  # what older glimpse versions called this source (its tags are renamed)

    @abstractmethod
    def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``float32[n, 3, H, W]`` preprocessed pixels -> probabilities ``float32[n, C]``."""

    def score_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images -> probabilities ``float32[n, C]``."""
        from glimpse.preprocess import preprocess_batch

        if not images:
            return np.zeros((0, len(self.vocab)), dtype=np.float32)
        return self.score_pixels(preprocess_batch(images, self.preprocess))

    def tag_images(self, images: Sequence[Image.Image], **options: Any) -> list[list[Tag]]:
        """Tags per image; ``options`` as ``select``."""
        return select(self.score_images(images), self.vocab, **options)
