"""FAISS index: upsert/remove with stable ids, persistence, catch-up from the change log, mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glimpse.catalog import STATE_OK, Catalog, FileUpdate
from glimpse.encoders.base import l2_normalize
from glimpse.errors import IndexMismatchError
from glimpse.vectors import open_index, sync_index
from glimpse.vectors.faiss import FaissIndex

KEY = "m"
DIM = 8


def random_vectors(n: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, DIM)))


@pytest.fixture()
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite3")
    cat.register_model(KEY, "m", DIM, {})
    yield cat
    cat.close()


def add_files(catalog: Catalog, vectors: np.ndarray, start: int = 0) -> list[int]:
    updates = [FileUpdate(f"/r/{start + i}.jpg", 1, 1, STATE_OK, hash=f"h{start + i}", vector=v)
               for i, v in enumerate(vectors)]
    return catalog.apply(updates, KEY)


def test_upsert_remove_search(tmp_path):
    index = FaissIndex(tmp_path, KEY, DIM)
    vectors = random_vectors(5)
    index.upsert(np.arange(10, 15), vectors)
    result = index.search(vectors[2], k=3)[0]
    assert result.ids[0] == 12 and result.scores[0] == pytest.approx(1.0, abs=1e-5)
    index.upsert(np.array([12]), vectors[0:1])  # replace, not duplicate
    assert len(index) == 5
    assert index.remove(np.array([12, 99])) == 1
    assert sorted(index.ids().tolist()) == [10, 11, 13, 14]


def test_wrong_dimension_is_refused(tmp_path):
    index = FaissIndex(tmp_path, KEY, DIM)
    with pytest.raises(IndexMismatchError, match="dimension 8"):
        index.upsert(np.array([1]), np.ones((1, 4), dtype=np.float32))


def test_open_builds_then_catches_up(tmp_path, catalog):
    ids = add_files(catalog, random_vectors(6))
    index = open_index(tmp_path / "index", catalog, KEY, DIM)
    assert len(index) == 6 and index.applied_change == catalog.last_change()
    # later changes: two removed, three added; a fresh open replays them from the manifest's change id
    catalog.delete_files(ids[:2])
    new_ids = add_files(catalog, random_vectors(3, seed=1), start=100)
    reopened = open_index(tmp_path / "index", catalog, KEY, DIM, save=False)
    assert sorted(reopened.ids().tolist()) == sorted(ids[2:] + new_ids)
    manifest = json.loads((tmp_path / "index" / "m.json").read_text())
    assert manifest["applied_change"] < catalog.last_change()  # it really replayed


def test_replay_is_idempotent(tmp_path, catalog):
    add_files(catalog, random_vectors(4))
    index = open_index(tmp_path / "index", catalog, KEY, DIM)
    index.applied_change = 0  # as if the manifest were stale: replay everything again
    sync_index(index, catalog)
    assert len(index) == 4


def test_damaged_index_is_rebuilt(tmp_path, catalog):
    add_files(catalog, random_vectors(4))
    open_index(tmp_path / "index", catalog, KEY, DIM)
    (tmp_path / "index" / "m.faiss").write_bytes(b"garbage")
    assert len(open_index(tmp_path / "index", catalog, KEY, DIM)) == 4


def test_index_of_other_dimension_is_refused(tmp_path, catalog):
    add_files(catalog, random_vectors(2))
    open_index(tmp_path / "index", catalog, KEY, DIM)
    with pytest.raises(IndexMismatchError, match="rebuild-index"):
        FaissIndex.load(tmp_path / "index", KEY, 16)


def test_batch_committed_during_catch_up_is_not_taken_for_damage(tmp_path, catalog, monkeypatch, caplog):
    """A writer committing between the replay and the count check makes the counts differ for a moment: the
    reader catches up again instead of rebuilding the whole index (and telling the user it was damaged)."""
    add_files(catalog, random_vectors(4))
    index = open_index(tmp_path / "index", catalog, KEY, DIM)
    add_files(catalog, random_vectors(2, seed=1), start=10)
    real_count = catalog.count_embeddings
    committed = []

    def count_while_a_writer_commits(model_key):
        if not committed:  # the concurrent indexing batch lands right after the reader's replay
            committed.append(add_files(catalog, random_vectors(3, seed=2), start=20))
        return real_count(model_key)

    monkeypatch.setattr(catalog, "count_embeddings", count_while_a_writer_commits)
    monkeypatch.setattr(index, "reset", lambda: pytest.fail("rebuilt an index that was only behind"))
    assert sync_index(index, catalog)
    assert len(index) == 9 and set(committed[0]) <= set(index.ids().tolist())
    assert not [r for r in caplog.records if r.name == "glimpse"]
