"""Carry a library's vectors over when the key of its model's weights is computed a new way.

Model keys once hashed only the first and last MiB of the weights (``checkpoints.legacy_key``); they now hash
every byte (``checkpoints.fingerprint``). A library indexed before holds its vectors under the old key of the
same weights, so on first use with the new key everything stored under the old one is renamed: the
catalog's model, embeddings, change log and CLIP tags in one transaction (``Catalog.rename_model_key``),
the index policy, the FAISS index (rewritten under the new name before the catalog commits, so a kill at
any point leaves either the old state or a usable new one) and the text-embedding cache. Nothing is
encoded again. A Milvus collection is named after the key: the new one is filled from the catalog.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from glimpse.errors import GlimpseError
from glimpse.notices import notice

if TYPE_CHECKING:
    from glimpse.catalog import Catalog
    from glimpse.spec import ModelSpec


def adopt_legacy_key(catalog: Catalog, spec: ModelSpec, library_dir: Path, index_dir: Path) -> ModelSpec:
    """``spec``, after renaming what ``catalog`` holds under the old key of the same weights to ``spec.key``.

    Returns ``spec`` unchanged when the catalog already knows ``spec.key`` or never knew the old key. When the
    catalog cannot be written (a read-only library), nothing is renamed and ``spec`` comes back with the old
    key, so its vectors are still found.
    """
    from glimpse.checkpoints import legacy_key

    known = {model["key"] for model in catalog.models()}
    if spec.key in known:
        return spec
    old = legacy_key(spec)
    if old is None or old not in known:
        return spec
    written = _copy_faiss_index(index_dir, old, spec)
    try:
        renamed = _rename_in_catalog(catalog, old, spec)
    except (sqlite3.Error, GlimpseError):
        for path in written:  # the catalog still says the old key: the copies would only be clutter
            path.unlink(missing_ok=True)
        return replace(spec, key=old)
    if renamed:
        _drop_faiss_index(index_dir, old, spec.dim)
        _move_text_cache(library_dir, old, spec.key)
        notice(f"model {spec.name}: its vectors moved from key {old} to {spec.key} (keys now hash the whole "
               "weights); nothing is encoded again")
    return spec


def _rename_in_catalog(catalog: Catalog, old: str, spec: ModelSpec) -> bool:
    from glimpse.tagging.clip_tagger import clip_source
    from glimpse.vectors.select import load_policy, save_policy

    policy = load_policy(catalog, old)
    if policy != load_policy(catalog, spec.key):
        save_policy(catalog, spec.key, policy)  # a setting, copied first: the rename below is what commits
    return catalog.rename_model_key(old, spec.key, spec.to_dict(),
                                    tag_sources={clip_source(old): clip_source(spec.key)})


def _copy_faiss_index(index_dir: Path, old: str, spec: ModelSpec) -> list[Path]:
    """Write the FAISS index of ``old`` again under ``spec.key`` (no retraining); the files written."""
    from glimpse.vectors.faiss import FaissIndex

    try:
        index = FaissIndex.load(index_dir, old, spec.dim, mmap=True)
        if index is None:
            return []
        index.model_key = spec.key
        index.save()
        return [index.index_path, index.manifest_path]
    except (OSError, RuntimeError, ValueError, GlimpseError):  # faiss reports write failures as RuntimeError
        return []  # a damaged or unwritable index: the new key's index is rebuilt from the catalog


def _drop_faiss_index(index_dir: Path, old: str, dim: int) -> None:
    from glimpse.vectors.faiss import FaissIndex

    stale = FaissIndex(index_dir, old, dim)
    for path in (stale.manifest_path, stale.index_path):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _move_text_cache(library_dir: Path, old: str, new: str) -> None:
    from glimpse.zeroshot import move_text_cache

    with contextlib.suppress(OSError):  # only a cache: at worst its prompts are encoded again
        move_text_cache(library_dir, old, new)
