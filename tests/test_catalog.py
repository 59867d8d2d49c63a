"""Catalog: schema, upserts, moves, deletions, the change log, non-UTF-8 paths."""

from __future__ import annotations

import os
import sqlite3

import numpy as np
import pytest

from glimpse.catalog import SCHEMA_VERSION, STATE_ERROR, STATE_OK, Catalog, FileUpdate, prefix_range
from glimpse.errors import CatalogError

KEY = "test-model"


@pytest.fixture()
def catalog(tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite3")
    cat.register_model(KEY, "test", 4, {"name": "test"})
    yield cat
    cat.close()


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def ok(path: str, vector=None, **kw) -> FileUpdate:
    return FileUpdate(path=path, size=kw.pop("size", 10), mtime_ns=kw.pop("mtime_ns", 1), state=STATE_OK,
                      hash=kw.pop("hash", os.fsencode(path).hex()), vector=vector, **kw)


def test_schema_is_versioned_and_wal(catalog, tmp_path):
    assert catalog.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "catalog.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_newer_schema_is_refused(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite3")
    cat.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    cat.close()
    with pytest.raises(CatalogError, match="upgrade glimpse"):
        Catalog(tmp_path / "c.sqlite3")


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match=r"is damaged .*\.recover"):
        Catalog(path)


def test_apply_stores_vectors_and_logs_changes(catalog):
    ids = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0)), ok("/r/b.jpg", vec(0, 1, 0, 0))], KEY)
    got_ids, vectors = catalog.embeddings(KEY)
    assert got_ids.tolist() == sorted(ids)
    np.testing.assert_array_equal(vectors[0], vec(1, 0, 0, 0))
    last, touched = catalog.changed_since(0, KEY)
    assert touched == set(ids) and last == catalog.last_change()
    # re-applying the same path updates in place: same id, one row
    again = catalog.apply([ok("/r/a.jpg", vec(0, 0, 1, 0), size=11)], KEY)
    assert again[0] == ids[0]
    assert catalog.file_by_path("/r/a.jpg").size == 11
    assert catalog.count_embeddings(KEY) == 2


def test_error_state_drops_stale_vectors(catalog):
    (fid,) = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0))], KEY)
    catalog.apply([FileUpdate("/r/a.jpg", 3, 2, STATE_ERROR, error="truncated JPEG")], KEY)
    assert catalog.count_embeddings(KEY) == 0
    assert catalog.errors()[0].error == "truncated JPEG"
    last_before = catalog.last_change()
    assert fid in catalog.changed_since(last_before - 1, KEY)[1]


def test_metadata_only_update_keeps_vector(catalog):
    catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0))], KEY)
    catalog.apply([ok("/r/a.jpg", mtime_ns=99)], KEY)
    assert catalog.count_embeddings(KEY) == 1


def test_move_keeps_id_and_vector(catalog):
    (fid,) = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0))], KEY)
    (moved,) = catalog.apply([ok("/r/sub/a.jpg", move_from=fid)], KEY)
    assert moved == fid
    assert catalog.file_by_path("/r/a.jpg") is None
    assert catalog.file_by_path("/r/sub/a.jpg").id == fid
    assert catalog.count_embeddings(KEY) == 1


def test_reuse_copies_vector(catalog):
    (a,) = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0), hash="h")], KEY)
    assert catalog.reusable_embedding("h", KEY) == a
    (b,) = catalog.apply([ok("/r/copy.jpg", reuse_from=a, hash="h")], KEY)
    ids, vectors = catalog.embeddings(KEY, [b])
    assert ids.tolist() == [b]
    np.testing.assert_array_equal(vectors[0], vec(1, 0, 0, 0))


def test_delete_under_prefix_is_exact(catalog):
    catalog.apply([ok("/r/a/x.jpg", vec(1, 0, 0, 0)), ok("/r/ab/y.jpg", vec(0, 1, 0, 0)),
                   ok("/r/a/deep/z.jpg", vec(0, 0, 1, 0))], KEY)
    assert catalog.delete_under("/r/a") == 2
    assert [r.path for r in catalog.files_under("/r").values()] == ["/r/ab/y.jpg"]
    assert prefix_range("/r/a") == (b"/r/a/", b"/r/a0")


def test_ids_are_never_reused(catalog):
    (a,) = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0))], KEY)
    catalog.delete_files([a])
    (b,) = catalog.apply([ok("/r/a.jpg", vec(1, 0, 0, 0))], KEY)
    assert b > a


def test_non_utf8_paths_round_trip(catalog):
    name = os.fsdecode(b"/r/caf\xe9.jpg")
    (fid,) = catalog.apply([ok(name, vec(1, 0, 0, 0))], KEY)
    rec = catalog.files_by_id([fid])[fid]
    assert os.fsencode(rec.path) == b"/r/caf\xe9.jpg"
    assert rec.display_path == "/r/caf\ufffd.jpg"
    assert list(catalog.files_under("/r")) == [name]


def test_model_dimension_conflict_is_refused(catalog):
    with pytest.raises(CatalogError, match="dimension"):
        catalog.register_model(KEY, "test", 8, {})


def test_failed_transaction_leaves_nothing(catalog):
    with pytest.raises(ZeroDivisionError), catalog.transaction() as db:
        db.execute("INSERT INTO roots (path, added_at) VALUES (?, 0)", (b"/x",))
        raise ZeroDivisionError
    assert catalog.roots() == []


def test_float16_storage_round_trips_and_mixes(catalog):
    (a,) = catalog.apply([ok("/r/a.jpg", vec(0.6, 0.8, 0, 0))], KEY)
    catalog.vector_dtype = "float16"
    (b,) = catalog.apply([ok("/r/b.jpg", vec(0.1, 0.2, 0.3, 0.9273618))], KEY)
    ids, vectors = catalog.embeddings(KEY)
    assert ids.tolist() == [a, b] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], vec(0.6, 0.8, 0, 0))  # float32 row exact
    np.testing.assert_allclose(vectors[1], vec(0.1, 0.2, 0.3, 0.9273618), atol=1e-3)
    assert not np.array_equal(vectors[1], vec(0.1, 0.2, 0.3, 0.9273618))  # really stored as float16
    with pytest.raises(CatalogError, match="float16"):
        catalog.vector_dtype = "int8"
