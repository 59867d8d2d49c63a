"""Tags for the page, when the catalog has a tag store.

The server never guesses: the feature is looked up once, and a missing one is reported as such
(``GET /api/tags`` → ``[]`` with ``"available": false``).

Tags come from the catalog's tag store (the tagging feature): ``tag_counts(limit) -> [(tag, count)]``,
``tags_of(ids) -> {id: [(tag, score)]}`` and ``ids_with_tags(tags) -> set[int]`` (every tag required).
Tags are stored under their English name (the filter key). With ``lang="zh"`` each tag also carries a
``label``: its Chinese name from the built-in bilingual vocabulary (the English name when the vocabulary
has none, e.g. an open-set tag).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from glimpse.catalog import Catalog
from glimpse.errors import FeatureUnavailableError

TAG_METHODS = ("tag_counts", "tags_of", "ids_with_tags")


class Tags:
    """Tag look-ups through the catalog, or nothing when tagging is not installed."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self.available = all(callable(getattr(catalog, name, None)) for name in TAG_METHODS)
        self._chinese: dict[str, str] | None = None

    def label(self, tag: str, lang: str) -> str:
        """How ``tag`` (stored English name) is shown in ``lang``."""
        if lang != "zh":
            return tag
        if self._chinese is None:
            self._chinese = _chinese_names()
        return self._chinese.get(tag.lower(), tag)

    def facets(self, lang: str, limit: int) -> list[dict[str, Any]]:
        if not self.available:
            return []
        counts = self._catalog.tag_counts(limit)  # type: ignore[attr-defined]
        return [{"tag": tag, "label": self.label(tag, lang), "count": int(n)} for tag, n in counts]

    def for_ids(self, ids: list[int], lang: str) -> dict[int, list[dict[str, Any]]]:
        if not self.available or not ids:
            return {}
        found = self._catalog.tags_of(ids)  # type: ignore[attr-defined]
        return {i: [{"tag": t, "label": self.label(t, lang), "score": round(float(s), 6)} for t, s in tags]
                for i, tags in found.items()}

    def require(self) -> None:
        """Raise FeatureUnavailableError, saying why, when this glimpse cannot filter by tag."""
        if not self.available:
            raise FeatureUnavailableError(
                "filtering by tag needs image tags, and this glimpse has no tagging installed; "
                "leave the tag filter out"
            )


def _chinese_names() -> dict[str, str]:
    """English tag name (lower case) → its first Chinese name, from the built-in vocabulary if installed."""
    if importlib.util.find_spec("glimpse.tagging.vocab") is None:
        return {}
    from glimpse.tagging.base import split_chinese
    from glimpse.tagging.vocab import load_vocabulary

    vocab = load_vocabulary()
    names: dict[str, str] = {}
    for en, zh in zip(vocab.names, vocab.chinese or [], strict=False):
        first, _aliases = split_chinese(zh)
        if first:
            names.setdefault(en.lower(), first)
    return names

