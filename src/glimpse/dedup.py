"""Duplicate finding at three levels, each with its own threshold; output groups with a kept representative.

- ``exact``: identical bytes, from the content hashes the catalog already holds (nothing is read).
- ``perceptual``: 64-bit pHash (DCT of a 32x32 grey image) in numpy, robust to resizing and re-encoding.
  Matching is flip- and rotation-tolerant: a candidate is also hashed mirrored, and, to catch rotated
  copies, the central region of the image rotated by a few angles is compared with the central region
  of the other. The threshold is the Hamming distance (bits out of 64) at or below which two images match.
- ``semantic``: embedding cosine similarity of the library's model via the vector index's range search;
  the threshold is the minimum cosine.

Groups are the connected components of the "matches" graph; the representative kept is the largest image
(most pixels), then the oldest catalog entry, then the shortest path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from glimpse.errors import ImageError, UserInputError

if TYPE_CHECKING:
    from PIL import Image

    from glimpse.library import Library

Level = Literal["exact", "perceptual", "semantic"]
LEVELS: tuple[str, ...] = ("exact", "perceptual", "semantic")
DEFAULT_THRESHOLDS: dict[str, float] = {"exact": 0.0, "perceptual": 10.0, "semantic": 0.95}

HASH_SIZE = 8  # 8x8 DCT coefficients -> 64 bits
_DCT_INPUT = 32
ROTATIONS = (-45, -35, -25, -15, -8, 8, 15, 25, 35, 45)  # degrees tried for rotated copies
_CENTER = 0.5  # side fraction of the central region compared for rotations (stays inside any rotated frame)


# -- hashing --------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``float64[n, n]``: ``C @ x`` is the DCT of a length-n signal."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def phash_pixels(grey: np.ndarray) -> int:
    """pHash of a ``float[32, 32]`` grey image: bit set where a low DCT coefficient exceeds their median.

    The 8x8 lowest frequencies (DC included) are kept; bit ``i`` is coefficient ``i`` in row-major order.
    """
    c = _dct_matrix(grey.shape[0])
    coefficients = (c @ grey @ c.T)[:HASH_SIZE, :HASH_SIZE].ravel()
    bits = coefficients > np.median(coefficients)
    return int(np.packbits(bits).view(">u8")[0])


def _grey32(image: Image.Image) -> np.ndarray:
    from PIL import Image as PILImage

    return np.asarray(image.convert("L").resize((_DCT_INPUT, _DCT_INPUT), PILImage.Resampling.LANCZOS),
                      dtype=np.float64)


def phash(image: Image.Image) -> int:
    """64-bit perceptual hash of a PIL image (any size or mode)."""
    return phash_pixels(_grey32(image))


def dhash(image: Image.Image) -> int:
    """64-bit difference hash: 9x8 grey thumbnail, bit set where a pixel is brighter than its right neighbour."""
    from PIL import Image as PILImage

    small = np.asarray(image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), PILImage.Resampling.LANCZOS),
                       dtype=np.int16)
    return int(np.packbits((small[:, :-1] > small[:, 1:]).ravel()).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two 64-bit hashes."""
    return (a ^ b).bit_count()


def _center(image: Image.Image, fraction: float = _CENTER) -> Image.Image:
    w, h = image.size
    side = fraction * min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return image.crop((round(left), round(top), round(left + side), round(top + side)))


@dataclass(frozen=True)
class HashSet:
    """The hashes of one image: ``full`` and ``flipped`` (whole frame), ``center`` (central square) and
    ``rotated`` (central square of the image rotated by each of ``ROTATIONS``, unflipped and flipped)."""

    full: int
    flipped: int
    center: int
    rotated: tuple[int, ...]


def image_hashes(image: Image.Image) -> HashSet:
    """All hashes :func:`perceptual_distance` compares, for one decoded image."""
    from PIL import Image as PILImage

    grey = image.convert("L")
    # Work on a bounded copy: rotating a 24-megapixel photo ten times would be slow and changes nothing.
    grey.thumbnail((256, 256), PILImage.Resampling.LANCZOS)
    mirrored = grey.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    rotated = []
    for source in (grey, mirrored):
        for angle in ROTATIONS:
            turned = source.rotate(angle, resample=PILImage.Resampling.BILINEAR)
            rotated.append(phash(_center(turned)))
    return HashSet(phash(grey), phash(mirrored), phash(_center(grey)), tuple(rotated))


def perceptual_distance(a: HashSet, b: HashSet) -> int:
    """Smallest Hamming distance between ``a`` and ``b`` over: as is, mirrored, and rotated (central region)."""
    best = min(hamming(a.full, b.full), hamming(a.full, b.flipped))
    best = min(best, min(hamming(a.center, r) for r in b.rotated), min(hamming(b.center, r) for r in a.rotated))
    return best


def _close_pairs(hashes: Sequence[HashSet], threshold: float) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Per image ``i``, the later images ``j`` within ``threshold`` and their distances.

    The same distance as :func:`perceptual_distance`, vectorised: XOR + popcount over ``uint64`` arrays,
    one row against all later rows at a time (memory ``n x rotations``).
    """
    full = np.array([h.full for h in hashes], dtype=np.uint64)
    flipped = np.array([h.flipped for h in hashes], dtype=np.uint64)
    center = np.array([h.center for h in hashes], dtype=np.uint64)
    rotated = np.array([h.rotated for h in hashes], dtype=np.uint64).reshape(len(hashes), -1)
    for i in range(len(hashes) - 1):
        rest = slice(i + 1, None)
        distance = np.minimum(np.bitwise_count(full[i] ^ full[rest]), np.bitwise_count(full[i] ^ flipped[rest]))
        distance = np.minimum(distance, np.bitwise_count(center[i] ^ rotated[rest]).min(axis=1))
        distance = np.minimum(distance, np.bitwise_count(center[rest, None] ^ rotated[i][None, :]).min(axis=1))
        close = np.flatnonzero(distance <= threshold)
        yield i, close + i + 1, distance[close]


# -- grouping -----------------------------------------------------------------------------------------
@dataclass
class Item:
    """One image taking part in duplicate finding."""

    path: str
    id: int | None = None
    pixels: int = 0


@dataclass
class DuplicateGroup:
    keep: Item
    duplicates: list[Item]
    scores: list[float]  # per duplicate, its best match score (Hamming bits or cosine) within the group

    def to_dict(self) -> dict[str, Any]:
        def show(item: Item) -> dict[str, Any]:
            return {"path": os.fsencode(item.path).decode("utf-8", "replace"), "id": item.id}

        return {"keep": show(self.keep),
                "duplicates": [{**show(d), "score": round(s, 6)} for d, s in zip(self.duplicates, self.scores,
                                                                                  strict=True)]}


@dataclass
class DuplicateReport:
    level: str
    threshold: float
    images: int
    groups: list[DuplicateGroup]
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "threshold": self.threshold, "images": self.images,
                "groups": [g.to_dict() for g in self.groups],
                "duplicates": sum(len(g.duplicates) for g in self.groups), "failed": self.failed}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_pairs(items: Sequence[Item], pairs: Sequence[tuple[int, int, float]], *, higher_is_closer: bool
                ) -> list[DuplicateGroup]:
    """Connected components of matching ``(i, j, score)`` pairs, each with its representative kept."""
    uf = _UnionFind(len(items))
    best: dict[int, float] = {}
    for i, j, score in pairs:
        uf.union(i, j)
        for k in (i, j):
            old = best.get(k)
            if old is None or (score > old if higher_is_closer else score < old):
                best[k] = score
    members: dict[int, list[int]] = {}
    for k in best:
        members.setdefault(uf.find(k), []).append(k)
    groups = []
    for component in members.values():
        ordered = sorted(component, key=lambda k: (-items[k].pixels, items[k].id if items[k].id is not None
                                                   else 1 << 62, len(items[k].path), items[k].path))
        keep, rest = ordered[0], ordered[1:]
        groups.append(DuplicateGroup(items[keep], [items[k] for k in rest], [best[k] for k in rest]))
    groups.sort(key=lambda g: g.keep.path)
    return groups


def _check_threshold(level: str, threshold: float) -> None:
    if level == "perceptual" and not 0 <= threshold <= 64:
        raise UserInputError(f"--threshold for perceptual duplicates is a Hamming distance in 0..64, got {threshold}")
    if level == "semantic" and not -1 <= threshold <= 1:
        raise UserInputError(f"--threshold for semantic duplicates is a cosine similarity in -1..1, got {threshold}")


def find_perceptual(paths: Sequence[str], threshold: float = DEFAULT_THRESHOLDS["perceptual"],
                    ids: Sequence[int | None] | None = None) -> DuplicateReport:
    """Perceptual duplicates among image files (each decoded once; unreadable ones listed in ``failed``)."""
    from glimpse.images import open_image

    _check_threshold("perceptual", threshold)
    items: list[Item] = []
    hashes: list[HashSet] = []
    failed: list[dict[str, str]] = []
    for n, path in enumerate(paths):
        try:
            decoded = open_image(path, min_side=256)
        except ImageError as exc:
            failed.append({"path": path, "reason": str(exc)})
            continue
        items.append(Item(path, ids[n] if ids is not None else None, decoded.width * decoded.height))
        hashes.append(image_hashes(decoded.image))
    pairs = [(i, int(j), float(d)) for i, js, ds in _close_pairs(hashes, threshold) for j, d in zip(js, ds,
                                                                                                  strict=True)]
    return DuplicateReport("perceptual", threshold, len(items), group_pairs(items, pairs, higher_is_closer=False),
                           failed)


# -- over a library ------------------------------------------------------------------------------------
def find_exact(lib: Library) -> DuplicateReport:
    """Files of the library (photos and videos) with identical content hashes (as recorded at indexing time)."""
    records = lib.indexed_files()
    items = [Item(r.path, r.id, (r.width or 0) * (r.height or 0)) for r in records]
    first: dict[str, int] = {}
    pairs = []
    for k, rec in enumerate(records):
        if rec.hash is None:
            continue
        if rec.hash in first:
            pairs.append((first[rec.hash], k, 1.0))
        else:
            first[rec.hash] = k
    return DuplicateReport("exact", 0.0, len(items), group_pairs(items, pairs, higher_is_closer=True))


def find_semantic(lib: Library, threshold: float = DEFAULT_THRESHOLDS["semantic"]) -> DuplicateReport:
    """Images whose embeddings have cosine >= ``threshold``, found with the vector store's range search.

    Every image's vector follows the library's freshness rule (``Library.vectors``): a file changed since
    indexing is compared by its current content, and one that can no longer be read is listed in ``failed``.
    """
    _check_threshold("semantic", threshold)
    found = lib.vectors()
    records = lib.catalog.files_by_id([i for i in found.ids if i is not None])
    items = [Item(p, i, ((records[i].width or 0) * (records[i].height or 0)) if i in records else 0)
             for p, i in zip(found.paths, found.ids, strict=True)]
    row_of = {i: k for k, i in enumerate(found.ids)}
    # Rows whose vector is not the store's vector of their id (changed since indexing) are compared exactly
    # by their current vectors; every other pair comes from the store's range search.
    fresh = [k for k, (i, src) in enumerate(zip(found.ids, found.stored_from, strict=True)) if src != i]
    fresh_ids = {found.ids[k] for k in fresh}
    pairs: dict[tuple[int, int], float] = {}
    for k, (ids, scores) in enumerate(lib.range_search(found.vectors, threshold)):
        if found.ids[k] in fresh_ids:
            continue
        for file_id, score in zip(ids.tolist(), scores.tolist(), strict=True):
            j = row_of.get(file_id)
            if j is not None and j > k and file_id not in fresh_ids:
                pairs[(k, j)] = float(score)
    for k in fresh:
        scores = found.vectors @ found.vectors[k]
        for j in np.flatnonzero(scores > threshold).tolist():
            if j != k:
                pairs[(min(j, k), max(j, k))] = float(scores[j])
    ordered = [(k, j, d) for (k, j), d in sorted(pairs.items())]
    return DuplicateReport("semantic", threshold, len(items), group_pairs(items, ordered, higher_is_closer=True),
                           found.errors)


def find_duplicates(lib: Library, level: str, threshold: float | None = None,
                    paths: Sequence[str] | None = None) -> DuplicateReport:
    """Duplicates at ``level`` over the library (or, for ``perceptual``, over ``paths`` when given)."""
    if level not in LEVELS:
        raise UserInputError(f"unknown level {level!r}; choose exact, perceptual or semantic")
    value = DEFAULT_THRESHOLDS[level] if threshold is None else float(threshold)
    if level == "exact":
        return find_exact(lib)
    if level == "semantic":
        return find_semantic(lib, value)
    if paths:
        return find_perceptual(lib.image_files(paths), value)
    records = lib.indexed_files(videos=False)  # perceptual hashes are of pictures; videos compare exactly
    return find_perceptual([r.path for r in records], value, [r.id for r in records])
