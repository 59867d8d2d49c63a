"""Embeddings of image files for the understanding commands, without re-encoding what the library holds.

A file indexed with the library's model and unchanged since (same size and mtime) gets its stored vector;
anything else is decoded and encoded once. Files that cannot be read are reported, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import ImageError, UserInputError

if TYPE_CHECKING:
    from glimpse.library import Library


@dataclass
class ImageVectors:
    """``vectors[i]`` (L2-normalised ``float32[d]``) belongs to ``paths[i]``; ``ids[i]`` is its catalog id
    or ``None`` when it is not indexed. ``stored``/``encoded`` count where the vectors came from."""

    paths: list[str]
    vectors: np.ndarray
    ids: list[int | None]
    stored: int = 0
    encoded: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"images": len(self.paths), "stored": self.stored, "encoded": self.encoded, "failed": len(self.errors)}


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Image files named by ``paths`` (files, or folders walked recursively), absolute, in a stable order."""
    from glimpse.images import is_candidate
    from glimpse.pipeline import scan

    found: list[str] = []
    for raw in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(raw)))
        if not os.path.exists(path):
            raise UserInputError(f"{raw} does not exist; give image files or folders")
        for item in scan([path]):
            if item.problem is None and is_candidate(item.path):
                found.append(item.path)
    return found


def vectors_for_paths(lib: Library, paths: Sequence[str | os.PathLike[str]], *, batch_size: int = 32) -> ImageVectors:
    """Vectors of the images under ``paths`` with ``lib``'s model (stored ones reused)."""
    from glimpse.catalog import STATE_OK
    from glimpse.images import open_image

    files = image_files(paths)
    if not files:
        raise UserInputError(f"no image files found in {', '.join(os.fspath(p) for p in paths)}")
    key, dim = lib.spec.key, lib.spec.dim
    vectors = np.zeros((len(files), dim), dtype=np.float32)
    ids: list[int | None] = [None] * len(files)
    ok = np.zeros(len(files), dtype=bool)
    wanted: dict[int, int] = {}  # catalog id -> row
    for row, path in enumerate(files):
        rec = lib.catalog.file_by_path(os.path.realpath(path))
        if rec is None or rec.state != STATE_OK:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        ids[row] = rec.id
        if st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns:
            wanted[rec.id] = row
    result = ImageVectors(files, vectors, ids)
    if wanted:
        stored_ids, stored = lib.catalog.embeddings(key, wanted)
        for file_id, vector in zip(stored_ids.tolist(), stored, strict=True):
            vectors[wanted[file_id]] = vector
            ok[wanted[file_id]] = True
        result.stored = len(stored_ids)
    todo = [row for row in range(len(files)) if not ok[row]]
    for start in range(0, len(todo), batch_size):
        rows, images = [], []
        for row in todo[start:start + batch_size]:
            try:
                images.append(open_image(files[row], min_side=lib.spec.preprocess.min_side).image)
                rows.append(row)
            except ImageError as exc:
                result.errors.append({"path": files[row], "reason": str(exc)})
        if images:
            vectors[rows] = lib.encoder.encode_images(images)
            ok[rows] = True
            result.encoded += len(rows)
    if not ok.all():
        keep = np.flatnonzero(ok)
        result.paths = [files[i] for i in keep]
        result.ids = [ids[i] for i in keep]
        result.vectors = vectors[keep]
    return result


def library_vectors(lib: Library) -> ImageVectors:
    """Every stored vector of ``lib``'s model with its file path, in catalog id order (nothing encoded)."""
    from glimpse.library import EmptyLibraryError

    ids, vectors = lib.catalog.embeddings(lib.spec.key)
    if not len(ids):
        raise EmptyLibraryError(
            f"the library {lib.directory} has no images indexed with {lib.spec.name}; run `glimpse index PATH` first"
        )
    records = lib.catalog.files_by_id(ids.tolist())
    keep = [i for i, file_id in enumerate(ids.tolist()) if file_id in records]
    return ImageVectors([records[int(ids[i])].path for i in keep], np.ascontiguousarray(vectors[keep]),
                        [int(ids[i]) for i in keep], stored=len(keep))
