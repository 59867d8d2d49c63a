"""FAISS index: upsert/remove with stable ids, persistence, catch-up from the change log, mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glimpse.catalog import STATE_OK, Catalog, FileUpdate
from glimpse.encoders.base import l2_normalize
from glimpse.errors import IndexMismatchError
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.sync import open_index, sync_index

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


# -- which store a --store value names ---------------------------------------------------------------------
def test_check_store_normalises_each_form_and_refuses_others(tmp_path, monkeypatch):
    from glimpse.errors import UserInputError
    from glimpse.vectors.milvus import MilvusIndex
    from glimpse.vectors.stores import check_store, store_class

    for default in (None, "", "faiss"):
        assert check_store(default) is None and store_class(default) is FaissIndex
    for server in ("milvus://localhost:19530", "http://milvus:19530", "https://milvus.example:443",
                   "http://host/with.db"):  # a URI ending in .db is still a server
        assert check_store(server) == server and store_class(server) is MilvusIndex
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert check_store("lib.db") == str(tmp_path / "lib.db") and store_class("lib.db") is MilvusIndex
    assert check_store("~/stores/x.db") == str(tmp_path / "home" / "stores" / "x.db")
    assert check_store(check_store("lib.db")) == check_store("lib.db")  # normalising twice changes nothing
    for bad in ("redis://x", "FAISS ", "store.sqlite", "milvus"):
        with pytest.raises(UserInputError) as refused:
            check_store(bad)
        assert str(refused.value) == (f"--store {bad!r}: give 'faiss' (the default), a Milvus server as "
                                      "milvus://HOST:PORT, or a milvus-lite file ending in .db")
        with pytest.raises(UserInputError, match="milvus://HOST:PORT"):
            store_class(bad)


def test_open_store_refuses_a_store_of_no_known_form(tmp_path, catalog):
    from glimpse.errors import UserInputError
    from glimpse.vectors.sync import describe_store, open_store, rebuild_store

    for call in (open_store, rebuild_store, describe_store):
        with pytest.raises(UserInputError, match=r"milvus-lite file ending in \.db"):
            call("redis://x", tmp_path / "index", catalog, KEY, DIM)
    assert not (tmp_path / "index").exists()


# -- range search -------------------------------------------------------------------------------------------
def exact_matches(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, threshold: float
                  ) -> list[tuple[list[int], np.ndarray]]:
    """Per query, numpy's ids scoring strictly above ``threshold``, best first (ties: lower id), and scores."""
    out = []
    for scores in queries @ vectors.T:
        keep = np.flatnonzero(scores > threshold)
        order = keep[np.lexsort((ids[keep], -scores[keep]))]
        out.append((ids[order].tolist(), scores[order]))
    return out


def assert_same_matches(found, expected) -> None:
    """``found`` holds ``expected``'s ids and scores, each row best first (near-ties may round either way)."""
    assert len(found) == len(expected)
    for (ids, scores), (want_ids, want_scores) in zip(found, expected, strict=True):
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        by_id, want_by_id = np.argsort(ids), np.argsort(want_ids)
        np.testing.assert_array_equal(ids[by_id], np.asarray(want_ids, dtype=np.int64)[want_by_id])
        np.testing.assert_allclose(scores[by_id], want_scores[want_by_id], atol=1e-5)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)  # best first: the same score sequence


def test_exact_range_search_matches_faiss_range_search(tmp_path, monkeypatch):
    """Moved from test_dedup (dedup now asks the store): faiss' range search of a Flat index and the blocked
    products agree, chunk by chunk."""
    from glimpse.vectors import faiss as faiss_mod
    from glimpse.vectors.base import exact_range_search

    vectors = l2_normalize(np.random.default_rng(0).normal(size=(50, 6)))
    ids = np.arange(100, 150, dtype=np.int64)
    index = FaissIndex(tmp_path, KEY, 6)
    index.upsert(ids, vectors)
    monkeypatch.setattr(faiss_mod, "RANGE_CHUNK", 7)
    fast = index.range_search(vectors, 0.6)
    slow = exact_range_search(vectors, [(ids[:20], vectors[:20]), (ids[20:], vectors[20:])], 0.6, chunk=7)
    assert len(fast) == len(slow) == 50
    for (fi, fs), (si, ss) in zip(fast, slow, strict=True):
        order_f, order_s = np.argsort(fi), np.argsort(si)
        np.testing.assert_array_equal(fi[order_f], si[order_s])
        np.testing.assert_allclose(fs[order_f], ss[order_s], atol=1e-5)
    assert all(100 + k in fi for k, (fi, _) in enumerate(fast))  # every vector finds itself (cos 1)


def test_flat_range_search_is_every_vector_strictly_above_the_threshold(tmp_path, monkeypatch):
    from glimpse.vectors import faiss as faiss_mod

    vectors = random_vectors(300, seed=4)
    ids = np.arange(1000, 1300, dtype=np.int64)
    index = FaissIndex(tmp_path, KEY, DIM)
    assert [len(i) for i, _ in index.range_search(vectors[:3], 0.5)] == [0, 0, 0]  # empty: a row per query
    index.upsert(ids, vectors)
    queries = np.vstack([vectors[:40], random_vectors(30, seed=5)])
    monkeypatch.setattr(faiss_mod, "RANGE_CHUNK", 16)  # several query chunks, the last one short
    for threshold in (0.9, 0.5, -0.2):
        assert_same_matches(index.range_search(queries, threshold), exact_matches(ids, vectors, queries, threshold))
    # strictly above: a score equal to the threshold is left out (one-hot vectors score exactly 1 and 0)
    unit = np.eye(DIM, dtype=np.float32)
    exact = FaissIndex(tmp_path, "unit", DIM)
    exact.upsert(np.arange(DIM), unit)
    (at_one, _), = exact.range_search(unit[:1], 1.0)
    (below_one, scores), = exact.range_search(unit[:1], 0.999)
    assert at_one.tolist() == [] and below_one.tolist() == [0] and scores.tolist() == [1.0]
    (above_zero, _), = exact.range_search(unit[:1], 0.0)
    assert above_zero.tolist() == [0]  # the other axes score exactly 0: not above 0
    empty = exact.range_search(np.zeros((0, DIM), dtype=np.float32), 0.0)
    assert empty == []
    with pytest.raises(IndexMismatchError, match="dimension 8"):
        exact.range_search(np.ones((1, 4), dtype=np.float32), 0.0)
    exact.close()  # nothing to release: a no-op, the index still works
    assert len(exact.range_search(unit[:1], 0.5)[0][0]) == 1


def ivf_index(tmp_path, factory: str, ids: np.ndarray, vectors: np.ndarray) -> FaissIndex:
    from glimpse.vectors import select

    index = FaissIndex(tmp_path, KEY, vectors.shape[1], factory)
    select.train(index, vectors)
    index.upsert(ids, vectors)
    return index


def test_ivf_range_search_probes_the_tuned_lists_and_is_exact_over_all_of_them(tmp_path):
    from glimpse.vectors.synthetic import clustered_embeddings

    vectors = clustered_embeddings(2000, 16, clusters=8, seed=1)
    ids = np.arange(5, 2005, dtype=np.int64)
    queries = np.vstack([vectors[:25], clustered_embeddings(25, 16, clusters=8, seed=2)])
    index = ivf_index(tmp_path, "IVF16,Flat", ids, vectors)
    threshold = 0.8
    expected = exact_matches(ids, vectors, queries, threshold)
    index.set_search_params("nprobe=16")  # every list probed: exact
    assert_same_matches(index.range_search(queries, threshold), expected)
    index.set_search_params("nprobe=1")  # the tuned setting: what the probed lists hold, with exact scores
    found = index.range_search(queries, threshold)
    for (got, scores), (want, want_scores) in zip(found, expected, strict=True):
        assert set(got.tolist()) <= set(want)
        np.testing.assert_allclose(scores, [want_scores[want.index(i)] for i in got.tolist()], atol=1e-5)
        assert list(scores) == sorted(scores, reverse=True)
    assert sum(len(g) for g, _ in found) < sum(len(w) for w, _ in expected)  # nprobe=1 really probes less


def test_range_search_falls_back_to_exact_products_where_faiss_has_none(tmp_path, monkeypatch):
    """An index kind whose faiss class lacks range search (older faiss: some PQ/fast-scan kinds) is scanned
    exactly over its stored (decoded) vectors: everything the full range search finds, nothing else."""
    from glimpse.vectors import faiss as faiss_mod
    from glimpse.vectors.synthetic import clustered_embeddings

    vectors = clustered_embeddings(1500, 16, clusters=6, seed=3)
    ids = np.arange(1, 1501, dtype=np.int64) * 3
    queries = np.vstack([vectors[::50], clustered_embeddings(20, 16, clusters=6, seed=4)])
    for factory in ("IVF8,Flat", "IVF8,SQ8"):
        index = ivf_index(tmp_path, factory, ids, vectors)
        index.set_search_params("nprobe=8")
        native = index.range_search(queries, 0.7)  # faiss' own, over every list

        def not_implemented(*args, **kwargs):
            raise RuntimeError("Error in virtual void faiss::Index::range_search: range search not implemented")

        monkeypatch.setattr(index.native, "range_search", not_implemented)
        monkeypatch.setattr(faiss_mod, "RANGE_BLOCK", 256)  # several blocks of stored vectors
        fallback = index.range_search(queries, 0.7)
        for (got, scores), (want, want_scores) in zip(fallback, native, strict=True):
            by_id, want_by_id = np.argsort(got), np.argsort(want)  # near-ties may round into either order
            np.testing.assert_array_equal(got[by_id], want[want_by_id])
            np.testing.assert_allclose(scores[by_id], want_scores[want_by_id], atol=1e-4)
            assert list(scores) == sorted(scores, reverse=True)
        if factory == "IVF8,Flat":  # full vectors: the fallback is numpy's exact answer
            assert_same_matches(fallback, exact_matches(ids, vectors, queries, 0.7))
        monkeypatch.undo()
