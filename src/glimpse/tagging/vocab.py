"""glimpse's bilingual tag vocabulary: common tags with a Chinese name and a category each.

``data/vocab.tsv`` (UTF-8): ``english<TAB>chinese<TAB>category`` per line, ``#`` comments. Chinese synonyms
are separated by ``/`` (the first is shown, the rest are aliases), like RAM's Chinese tag list. The list was
written for glimpse (it is not RAM's tag list).
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from glimpse.errors import UserInputError
from glimpse.tagging.base import Vocabulary

CATEGORIES = frozenset({
    "animal", "plant", "food", "object", "vehicle", "clothing", "person", "body", "scene", "building",
    "nature", "weather", "action", "attribute", "color", "material", "event", "art", "sport", "text",
})
DEFAULT_CLIP_THRESHOLD = 0.5
VOCABULARY_ENV = "GLIMPSE_TAG_VOCABULARY"  # a user's vocabulary file replacing the built-in one everywhere


def parse_vocabulary(text: str, origin: str = "vocabulary") -> list[tuple[str, str, str]]:
    """``(english, chinese, category)`` rows of a vocabulary file; errors name the line."""
    rows: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    seen_zh: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise UserInputError(f"{origin} line {number}: expected 'english<TAB>chinese<TAB>category', got {line!r}")
        en, zh, category = (p.strip() for p in parts)
        if category not in CATEGORIES:
            raise UserInputError(f"{origin} line {number}: unknown category {category!r}; "
                                 f"expected one of {sorted(CATEGORIES)}")
        if en.lower() in seen:
            raise UserInputError(f"{origin} line {number}: {en!r} repeats line {seen[en.lower()]}")
        seen[en.lower()] = number
        # A Chinese name (or alias) naming two tags would make --tag / --exclude-tags ambiguous.
        for name in (p.strip() for p in zh.split("/") if p.strip()):
            if name in seen_zh:
                raise UserInputError(f"{origin} line {number}: the Chinese name {name!r} of {en!r} is already used "
                                     f"on line {seen_zh[name]}; give each tag its own Chinese names")
            seen_zh[name] = number
        rows.append((en, zh, category))
    return rows


@lru_cache(maxsize=1)
def builtin_rows() -> tuple[tuple[str, str, str], ...]:
    """The built-in vocabulary's ``(english, chinese, category)`` rows, in file order (parsed once)."""
    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    return tuple(parse_vocabulary(text, "glimpse/tagging/data/vocab.tsv"))


def load_vocabulary(path: str | Path | None = None, *, threshold: float = DEFAULT_CLIP_THRESHOLD) -> Vocabulary:
    """A user's vocabulary file (``path``, else ``$GLIMPSE_TAG_VOCABULARY``), else the built-in one.

    Every tag starts at ``threshold``.
    """
    path = path or os.environ.get(VOCABULARY_ENV) or None
    if path is None:
        rows = list(builtin_rows())
    else:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read the vocabulary {path} ({exc})") from exc
        rows = parse_vocabulary(text, str(path))
    if not rows:
        raise UserInputError(f"the vocabulary {path or 'built-in'} has no tags")
    return Vocabulary([r[0] for r in rows], np.full(len(rows), threshold, dtype=np.float32),
                      [r[1] for r in rows], [r[2] for r in rows])
