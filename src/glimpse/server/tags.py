"""Tags for the page: the catalog's tags, each shown in the page's language.

Tags are stored under their English name (the filter key): ``tag_counts(limit) -> [(tag, count)]`` and
``tags_of(ids) -> {id: [(tag, score)]}``. With ``lang="zh"`` each tag also carries a ``label``: its Chinese
name from the built-in bilingual vocabulary (the English name when the vocabulary has none, e.g. an
open-set tag).
"""

from __future__ import annotations

import threading
from typing import Any

from glimpse.catalog import Catalog


class Tags:
    """Tag look-ups through the catalog, labelled in ``"en"`` or ``"zh"``."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._chinese: dict[str, str] | None = None
        self._chinese_lock = threading.Lock()  # request threads: the vocabulary is read once

    def label(self, tag: str, lang: str) -> str:
        """How ``tag`` (stored English name) is shown in ``lang``."""
        if lang != "zh":
            return tag
        with self._chinese_lock:
            if self._chinese is None:
                self._chinese = chinese_names()
        return self._chinese.get(tag.lower(), tag)

    def facets(self, lang: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most common tags: ``[{"tag", "label", "count"}]``, most common first."""
        return [{"tag": tag, "label": self.label(tag, lang), "count": int(n)}
                for tag, n in self.catalog.tag_counts(limit)]

    def for_ids(self, ids: list[int], lang: str) -> dict[int, list[dict[str, Any]]]:
        """``{id: [{"tag", "label", "score"}]}`` of the images among ``ids`` that have tags, best first."""
        if not ids:
            return {}
        return {i: [{"tag": t, "label": self.label(t, lang), "score": round(float(s), 6)} for t, s in tags]
                for i, tags in self.catalog.tags_of(ids).items()}


def chinese_names() -> dict[str, str]:
    """English tag name (lower case) → its first Chinese name, from the built-in vocabulary."""
    from glimpse.tagging.base import split_chinese
    from glimpse.tagging.vocab import load_vocabulary

    vocab = load_vocabulary()
    names: dict[str, str] = {}
    for en, zh in zip(vocab.names, vocab.chinese or [], strict=False):
        first, _aliases = split_chinese(zh)
        if first:
            names.setdefault(en.lower(), first)
    return names
