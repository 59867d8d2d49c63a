"""Searchable items and how search results group them: a photo is one item, a video many (its sampled frames,
``Catalog`` frames); a search ranks items and answers with files, each video once with its best frames.

* ``kind`` filters items: ``"photo"`` or ``"video"`` (``--type``); None keeps both.
* ``group_items``: ``(item, score)`` pairs best first → one group per file, in the order of each file's best item,
  holding at most ``per_video`` of a video's frames (best first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from glimpse.errors import UserInputError

if TYPE_CHECKING:  # the CLI reads this module's constants without loading the catalog (numpy)
    from glimpse.catalog import ItemRecord

KIND_PHOTO = "photo"
KIND_VIDEO = "video"
KINDS = (KIND_PHOTO, KIND_VIDEO)
DEFAULT_PER_VIDEO = 3


def check_kind(kind: str | None) -> str | None:
    """``kind`` if it names an item kind (or is None); else a ``UserInputError`` listing the kinds."""
    if kind is not None and kind not in KINDS:
        raise UserInputError(f"unknown type {kind!r}: give one of {', '.join(KINDS)}")
    return kind


def check_per_video(per_video: int) -> int:
    if per_video < 1:
        raise UserInputError(f"--per-video must be at least 1 (frames listed per video), got {per_video}")
    return int(per_video)


def kind_of(item: ItemRecord) -> str:
    return KIND_PHOTO if item.time is None else KIND_VIDEO


def group_items(passed: Iterable[tuple[ItemRecord, float]], per_video: int) -> list[list[tuple[ItemRecord, float]]]:
    """One list per file, in the order the files' first items come (``passed`` is best first); a video's list
    keeps its first ``per_video`` frames."""
    groups: dict[int, list[tuple[ItemRecord, float]]] = {}
    for item, score in passed:
        group = groups.setdefault(item.file.id, [])
        if len(group) < per_video:
            group.append((item, score))
    return list(groups.values())
