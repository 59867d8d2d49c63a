"""Tags in the index: tag a library's images with a tagger and store them in the catalog.

Only files that the tagger's ``source`` has not tagged at their current content hash are read, so a second
run after adding or changing a few images tags just those.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.catalog import is_video_format
from glimpse.errors import ImageError, LibraryBusyError
from glimpse.images import open_image
from glimpse.preprocess import preprocess_image
from glimpse.tagging.base import Tagger, select

if TYPE_CHECKING:
    from glimpse.catalog import Catalog
    from glimpse.library import Library
    from glimpse.pipeline import Progress


@dataclass
class TagReport:
    source: str
    tagged: int = 0
    unchanged: int = 0
    failed: int = 0
    tags: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tag_catalog(catalog: Catalog, tagger: Tagger, *, batch_size: int = 16, progress: Progress | None = None,
                **options: Any) -> TagReport:
    """Tag every readable image of ``catalog`` that ``tagger.source`` has not tagged at its current content.

    ``options`` go to ``select`` (threshold, exclude, only, open_threshold). Each batch commits in one
    transaction, so an interrupted run keeps what it did and the next run continues.
    """
    if tagger.legacy_source and tagger.legacy_source != tagger.source:
        catalog.rename_tag_source(tagger.legacy_source, tagger.source)  # tagged by an older glimpse: kept
    todo = catalog.files_to_tag(tagger.source)
    report = TagReport(tagger.source)
    ok_count = catalog.counts().get("ok", 0)
    report.unchanged = max(ok_count - len(todo), 0)
    if progress is not None:
        progress.start(len(todo))
    pre = tagger.preprocess
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            pixels, kept = [], []
            for rec in batch:
                try:
                    decoded = open_image(rec.path, min_side=pre.min_side)
                    pixels.append(preprocess_image(decoded.image, pre))
                    kept.append(rec)
                except ImageError as exc:
                    report.failed += 1
                    report.errors.append({"path": rec.display_path, "reason": str(exc)})
            if kept:
                results = select(tagger.score_pixels(np.stack(pixels)), tagger.vocab, **options)
                catalog.put_tags([(rec.id, rec.hash, [(t.name, t.score) for t in tags])
                                  for rec, tags in zip(kept, results, strict=True)], tagger.source)
                report.tagged += len(kept)
                report.tags += sum(len(t) for t in results)
            if progress is not None:
                progress.advance(len(batch))
    finally:
        if progress is not None:
            progress.finish()
    return report


def facets(catalog: Catalog, top: int | None = None) -> list[dict[str, Any]]:
    """``[{"tag", "count"}]``, most frequent first."""
    return [{"tag": tag, "count": count} for tag, count in catalog.tag_counts(top)]


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or repeated options -> ``["a", "b"]`` (empty items dropped)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def tag_library(library: Library, *, batch_size: int = 1024, progress: Progress | None = None,
                **options: Any) -> TagReport:
    """Tag a library's images with the CLIP tagger of its own model, from the stored image vectors; a video
    with the best score of each tag over its frames.

    The CLIP tagger's scores are a function of the image embedding, which the catalog already holds: only
    files changed since indexing (or without a vector of the model) are decoded, by ``Library.vectors_of``'s
    freshness rule; unreadable ones count as failed. ``progress`` counts the vocabulary prompts encoded (the
    slow part, once per model: they are cached chunk by chunk, so an interrupted run resumes). ``options`` go
    to ``select``.
    """
    from glimpse.tagging.clip_tagger import ClipTagger
    from glimpse.zeroshot import text_cache_for

    tagger = ClipTagger(library.encoder, cache=text_cache_for(library.directory, library.spec.key),
                        progress=progress)
    catalog = library.catalog
    todo = catalog.files_to_tag(tagger.source, videos=True)
    report = TagReport(tagger.source, unchanged=max(catalog.counts().get("ok", 0) - len(todo), 0))
    videos = [rec for rec in todo if is_video_format(rec.format)]
    todo = [rec for rec in todo if not is_video_format(rec.format)]
    for rec in videos:
        # A video carries what its frames show: each tag scored by its best frame.
        frame_ids = [i for i, _ in catalog.frames_of(rec.id, library.spec.key)]
        if not frame_ids:
            continue  # not indexed with this model yet
        _, vectors = catalog.embeddings(library.spec.key, frame_ids)
        best = tagger.score_vectors(vectors).max(axis=0, keepdims=True)
        (tags,) = select(best, tagger.vocab, **options)
        catalog.put_tags([(rec.id, rec.hash, [(t.name, t.score) for t in tags])], tagger.source)
        report.tagged += 1
        report.tags += len(tags)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        # The library's freshness rule: a file changed since indexing is scored from its current content.
        found = library.vectors_of(chunk)
        hash_of = {rec.id: rec.hash for rec in chunk}
        report.failed += len(found.errors)
        report.errors += found.errors
        if not found.paths:
            continue
        results = select(tagger.score_vectors(found.vectors), tagger.vocab, **options)
        catalog.put_tags([(int(i), hash_of[int(i)], [(t.name, t.score) for t in tags])
                          for i, tags in zip(found.ids, results, strict=True) if i is not None], tagger.source)
        report.tagged += len(found.paths)
        report.tags += sum(len(t) for t in results)
    if report.tagged:
        # A store that filters by tags (Milvus) takes them in now; if another process is indexing, it will.
        with contextlib.suppress(LibraryBusyError):
            library.save_vector_index()
    return report
