"""The Milvus store, for real on milvus-lite: same contract as FAISS, filters pushed down, change-log sync."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from typer.testing import CliRunner

from conftest import make_photos
from glimpse.catalog import Catalog, FileUpdate
from glimpse.errors import IndexMismatchError
from glimpse.vectors.milvus import FILTERS_PROPERTY, MAX_TAGS, MilvusIndex, filter_expression, fold_tag
from glimpse.vectors.sync import open_store, sync_index
from glimpse.vectors.synthetic import clustered_embeddings
from test_search_filters import expected_ids, far_query, filter_cases, make_filter_photos, put_test_tags

DIM = 16
KEY = "synthetic-16"


def test_filter_expression_is_a_directory_range_and_quotes_strings():
    assert filter_expression() == ""
    assert filter_expression("/photos/b_0") == 'path >= "/photos/b_0/" and path < "/photos/b_00"'
    assert filter_expression("/a%/", ["dog", 'say "hi"']) == (
        'path >= "/a%/" and path < "/a%0" and array_contains(tags, "dog") and array_contains(tags, "say \\"hi\\"")'
    )
    # several folders are alternatives; tags fold to ASCII lower case like the stored ones; no_tags exclude
    assert filter_expression(["/a", "/b"], ["Dog"], ["CAT", "Éclair"]) == (
        '((path >= "/a/" and path < "/a0") or (path >= "/b/" and path < "/b0")) and array_contains(tags, "dog") '
        'and not array_contains(tags, "cat") and not array_contains(tags, "Éclair")'
    )


@pytest.fixture()
def filled(tmp_path):
    """A catalog with 60 vectors: files /photos/b_0/*.jpg, /photos/bx0/*.jpg and /other/*.jpg."""
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    catalog.register_model(KEY, "synthetic", DIM, {})
    vectors = clustered_embeddings(60, DIM, clusters=4, seed=3)
    folders = ["/photos/b_0", "/photos/bx0", "/other"]
    updates = [FileUpdate(path=f"{folders[i % 3]}/{i}.jpg", size=1, mtime_ns=1, state="ok", hash=f"h{i}", vector=v)
               for i, v in enumerate(vectors)]
    ids = np.array(catalog.apply(updates, KEY), dtype=np.int64)
    yield catalog, ids, vectors
    catalog.close()


def test_milvus_lite_index_contract_and_filters(tmp_path, filled):
    catalog, ids, vectors = filled
    db = str(tmp_path / "store.db")
    tags = {int(i): (["dog"] if n % 2 == 0 else ["cat"]) for n, i in enumerate(ids)}
    index = MilvusIndex(db, catalog, KEY, DIM, tag_source=lambda wanted: {i: tags[i] for i in wanted if i in tags})
    assert len(index) == 0 and index.applied_change == 0
    index.upsert(ids, vectors)
    assert len(index) == 60 and sorted(index.ids().tolist()) == ids.tolist()

    exact = np.argsort(-(vectors @ vectors[5]))[:5]
    result = index.search(vectors[5:6], 5)[0]
    assert result.ids.tolist() == ids[exact].tolist()
    assert np.allclose(result.scores, (vectors @ vectors[5])[exact], atol=1e-5)
    assert list(result.scores) == sorted(result.scores, reverse=True)

    # the prefix is a directory, and "_" in it is not a wildcard (b_0 must not match bx0)
    in_b0 = set(ids[0::3].tolist())
    hits = index.search(vectors[1:2], 60, path_prefix="/photos/b_0")[0].ids.tolist()
    assert set(hits) == in_b0
    dogs_in_b0 = {i for i in in_b0 if tags[i] == ["dog"]}
    assert set(index.search(vectors[1:2], 60, path_prefix="/photos/b_0/", tags=["dog"])[0].ids.tolist()) == dogs_in_b0

    # upsert replaces, remove counts only what was there
    index.upsert(ids[:1], vectors[40:41])
    assert len(index) == 60 and set(index.search(vectors[40:41], 2)[0].ids.tolist()) == {ids[0], ids[40]}
    assert index.remove(np.array([ids[2], ids[3], 999_999])) == 2
    assert len(index) == 58 and ids[2] not in index.search(vectors[2:3], 5)[0].ids.tolist()

    index.applied_change = 17
    index.save()
    index.close()
    again = MilvusIndex(db, catalog, KEY, DIM)
    assert again.applied_change == 17 and len(again) == 58
    again.close()
    with pytest.raises(IndexMismatchError, match="dimension 16"):
        MilvusIndex(db, catalog, KEY, DIM * 2)


def test_milvus_follows_the_catalog_change_log(tmp_path, filled):
    catalog, ids, vectors = filled
    catalog.put_tags([(int(ids[0]), "h0", [("beach", 0.9), ("dog", 0.4)])], source="clip")
    db = str(tmp_path / "store.db")
    index = open_store(db, tmp_path / "index", catalog, KEY, DIM)
    assert isinstance(index, MilvusIndex) and len(index) == 60
    assert index.applied_change == catalog.last_change()
    # the catalog's tags travel with the vectors and filter inside Milvus
    assert index.search(vectors[30:31], 60, tags=["beach"])[0].ids.tolist() == [ids[0]]
    catalog.delete_files(ids[:10].tolist())
    moved = np.roll(vectors[10:20], 1, axis=0)  # ten files re-encoded with new content
    catalog.apply([FileUpdate(path=f"/new/{i}.jpg", size=1, mtime_ns=1, state="ok", hash=f"n{i}", vector=v)
                   for i, v in enumerate(moved)], KEY)
    assert sync_index(index, catalog)
    assert len(index) == 60 == catalog.count_embeddings(KEY)
    assert not set(ids[:10].tolist()) & set(index.ids().tolist())
    assert not sync_index(index, catalog)  # caught up: nothing to do
    index.save()
    index.close()
    reopened = open_store(db, tmp_path / "index", catalog, KEY, DIM)
    assert reopened.applied_change == catalog.last_change() and len(reopened) == 60
    reopened.close()


def test_library_on_milvus_lite_matches_faiss(tmp_path, tiny_clip):
    import glimpse

    make_photos(tmp_path / "photos" / "a", 6)
    make_photos(tmp_path / "photos" / "b", 6, start=6)
    db = str(tmp_path / "lib.milvus.db")
    with glimpse.open_library(tmp_path / "lib_m", model=str(tiny_clip), store=db) as on_milvus, \
            glimpse.open_library(tmp_path / "lib_f", model=str(tiny_clip)) as on_faiss:
        on_milvus.index([tmp_path / "photos"])
        on_faiss.index([tmp_path / "photos"])
        for query in ("a red square", "blue sky"):
            m = on_milvus.search(query, k=5)
            f = on_faiss.search(query, k=5)
            assert [h.path for h in m] == [h.path for h in f]
            assert np.allclose([h.score for h in m], [h.score for h in f], atol=1e-5)
        status = on_milvus.status()
        assert status.index_kind.startswith("milvus") and status.index_vectors == 12
        on_milvus.remove([tmp_path / "photos" / "a"])
        hits = on_milvus.search("a red square", k=12)
        assert len(hits) == 6 and all("/photos/b/" in h.path for h in hits)


def test_cli_store_option_routes_to_milvus(tmp_path, tiny_clip):
    from glimpse.cli import app

    make_photos(tmp_path / "photos", 4)
    db = str(tmp_path / "cli.db")
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip), "--store", db]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "index", str(tmp_path / "photos"), "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*base, "search", "a photo", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3
    bad = runner.invoke(app, ["--library", str(tmp_path / "lib"), "--store", "redis://x", "status"])
    assert bad.exit_code == 1 and "milvus://HOST:PORT" in bad.stderr


def spy_on_search(index: MilvusIndex, monkeypatch) -> list[tuple[int, dict]]:
    """Record ``(k, filters)`` of every search the store runs (the real search still runs)."""
    calls: list[tuple[int, dict]] = []
    real = index.search

    def search(queries, k, **filters):
        calls.append((k, {name: value for name, value in filters.items() if value}))
        return real(queries, k, **filters)

    monkeypatch.setattr(index, "search", search)
    return calls


def test_library_filters_run_inside_milvus(tmp_path, tiny_clip, monkeypatch):
    import glimpse

    root = Path(os.path.realpath(tmp_path / "photos"))
    photos = make_filter_photos(root, tmp_path / "outside")
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=str(tmp_path / "lib.db")) as lib:
        lib.index([root])
        files = put_test_tags(lib.catalog, photos)  # tagged after the vectors reached Milvus: the rows follow
        calls = spy_on_search(lib._vector_index(save=False), monkeypatch)
        query = lib.query_vector("a photo")
        for filters in filter_cases(root):
            want = expected_ids(lib, files, query, **filters)
            for k in (2, 50):
                calls.clear()
                assert [h.id for h in lib.search_vector(query, k, **filters)] == want[:k], (filters, k)
                if b"\xe9" in os.fsencode(filters.get("folder", "")) or "\ufffd" in str(filters.get("folder", "")):
                    continue  # stored paths cannot tell these folders apart: Library filters, exactly
                assert len(calls) == 1 and calls[0][0] == k and calls[0][1], (filters, calls)  # one filtered search

        # matches ranked far below k are found by one filtered search of k, not by widening
        sub = root / "a" / "b" / "sub"
        far, wanted = far_query(lib, files, sub)
        assert not wanted & {h.id for h in lib.search_vector(far, 10)}
        calls.clear()
        assert {h.id for h in lib.search_vector(far, 2, folder=sub)} == wanted
        assert calls == [(2, {"path_prefix": [str(sub)]})]
        hits = lib.search("a photo", k=50, tags=["DOG"], no_tags=["cat"], folder=root / "a")
        assert [h.id for h in hits] == expected_ids(lib, files, query, tags=["dog"], no_tags=["cat"], folder=root / "a")


def test_milvus_rows_follow_moves_and_old_collections_fall_back(tmp_path, tiny_clip, monkeypatch):
    import glimpse

    root = Path(os.path.realpath(tmp_path / "photos"))
    make_photos(root / "a", 3)
    moving = make_photos(root / "b", 3, start=3)[0]
    store = str(tmp_path / "lib.db")
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=store) as lib:
        lib.index([root])
        moved_id = lib.catalog.file_by_path(str(moving)).id
        moving.rename(root / "a" / "moved.jpg")
        assert lib.index([root]).moved == 1
        calls = spy_on_search(lib._vector_index(save=False), monkeypatch)
        in_a = {h.id for h in lib.search("a photo", k=10, folder=root / "a")}
        assert moved_id in in_a and len(in_a) == 4 and calls[-1][1]  # filtered inside Milvus, on the new path
        assert moved_id not in {h.id for h in lib.search("a photo", k=10, folder=root / "b")}
        index = lib._vector_index(save=False)
        index._client.drop_collection_properties(index.collection, property_keys=[FILTERS_PROPERTY])
    # a collection from before filterable rows: the library filters, until rebuild-index refills it
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=store) as lib:
        calls = spy_on_search(lib._vector_index(save=False), monkeypatch)
        assert {h.id for h in lib.search("a photo", k=10, folder=root / "a")} == in_a
        assert calls and not any(filters for _, filters in calls)
        lib.rebuild_index()
        assert lib._vector_index(save=False).filterable


def test_tagging_leaves_milvus_caught_up(tmp_path, tiny_clip, small_vocab):
    """After `index --tags` the collection already holds the tags (no later search has to replay them)."""
    import glimpse
    from glimpse.tagging.library_tags import tag_library

    make_photos(tmp_path / "photos", 5)
    db = str(tmp_path / "tags.db")
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=db) as lib:
        lib.index([tmp_path / "photos"])
        before = lib.catalog.last_change()
        report = tag_library(lib, threshold=0.0)  # every vocabulary tag passes: each file gets tags
        assert report.tagged == 5 and lib.catalog.last_change() > before
        # the best-scored MAX_TAGS of each file (tags_of lists them best first)
        catalog_tags = {i: sorted(fold_tag(t) for t, _ in tags[:MAX_TAGS]) for i, tags in lib.catalog.tags_of(
            lib.catalog.files_with_vectors(lib.spec.key)).items()}
        fresh = MilvusIndex(db, lib.catalog, lib.spec.key, lib.spec.dim)
        assert fresh.applied_change == lib.catalog.last_change()
        rows = fresh._client.query(fresh.collection, filter="id >= 0", output_fields=["id", "tags"])
        assert len(rows) == 5 and {int(r["id"]): sorted(r["tags"]) for r in rows} == catalog_tags
        fresh.close()


def test_collection_of_another_catalog_is_refilled(tmp_path, filled, caplog):
    """A collection filled from a deleted catalog is not reused: its ids name other files in the new one."""
    import logging

    from glimpse.vectors.milvus import CATALOG_PROPERTY

    catalog, _, vectors = filled
    db = str(tmp_path / "store.db")
    open_store(db, tmp_path / "index", catalog, KEY, DIM).close()
    fresh = Catalog(tmp_path / "fresh.sqlite3")  # same files, numbered in the opposite order
    fresh.register_model(KEY, "synthetic", DIM, {})
    fresh.apply([FileUpdate(path=f"/new/{i}.jpg", size=1, mtime_ns=1, state="ok", hash=f"h{i}", vector=v)
                 for i, v in enumerate(vectors[::-1])], KEY)
    assert fresh.last_change() == catalog.last_change() and fresh.catalog_id != catalog.catalog_id
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        index = open_store(db, tmp_path / "index", fresh, KEY, DIM)
    assert any("another catalog" in r.getMessage() and "refilled" in r.getMessage() for r in caplog.records)
    assert index.catalog_id == fresh.catalog_id and len(index) == 60
    first = index.search(vectors[-1:], 1)[0]  # the new catalog's file 1 holds the old catalog's last vector
    assert first.ids.tolist() == [1] and first.scores[0] == pytest.approx(1.0, abs=1e-5)
    properties = index._client.describe_collection(index.collection)["properties"]
    assert properties[CATALOG_PROPERTY] == fresh.catalog_id
    # a collection that records no catalog (made before the binding) is refilled too
    index._client.drop_collection_properties(index.collection, property_keys=[CATALOG_PROPERTY])
    index.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        again = open_store(db, tmp_path / "index", fresh, KEY, DIM)
    assert any("records no catalog" in r.getMessage() for r in caplog.records) and again.catalog_id == fresh.catalog_id
    again.close()
    # bound and caught up: reused without a notice
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        open_store(db, tmp_path / "index", fresh, KEY, DIM).close()
    assert not caplog.records
    fresh.close()


def test_milvus_range_search_is_exact_and_close_releases_the_client(tmp_path, filled, monkeypatch):
    """Every stored vector strictly above the threshold, per query, best first — as numpy computes it over the
    collection's rows, streamed in several batches; ``close`` ends the client's connection."""
    from pymilvus.exceptions import MilvusException

    catalog, ids, vectors = filled
    db = str(tmp_path / "store.db")
    index = MilvusIndex(db, catalog, KEY, DIM)
    assert [len(found) for found, _ in index.range_search(vectors[:2], 0.0)] == [0, 0]  # empty collection
    index.upsert(ids, vectors)
    index.remove(ids[:4])  # removed rows are not found
    stored_ids, stored = ids[4:], vectors[4:]
    monkeypatch.setattr(index, "batch_rows", lambda: 7)  # the rows come back in 8 batches
    queries = np.vstack([vectors[:6], clustered_embeddings(6, DIM, clusters=4, seed=9)])
    for threshold in (0.9, 0.5, -1.0):
        found = index.range_search(queries, threshold)
        assert len(found) == len(queries)
        for (got, scores), query in zip(found, queries, strict=True):
            exact = stored @ query
            keep = np.flatnonzero(exact > threshold)
            assert got.dtype == np.int64 and scores.dtype == np.float32
            assert sorted(got.tolist()) == sorted(stored_ids[keep].tolist())
            by_id = np.argsort(got)
            np.testing.assert_allclose(scores[by_id], exact[keep][np.argsort(stored_ids[keep])], atol=1e-5)
            assert list(scores) == sorted(scores, reverse=True)
    assert sum(len(g) for g, _ in index.range_search(queries, -1.0)) == len(queries) * 56  # cosines are > -1
    index.close()
    with pytest.raises(MilvusException):
        len(index)
    again = MilvusIndex(db, catalog, KEY, DIM)  # the file is free for a new client
    assert len(again) == 56
    again.close()


def test_search_among_ids_matches_faiss(tmp_path, filled):
    """A metadata filter's id set searched inside the store: Milvus (``id in [...]``) and FAISS (id selector)
    give the exact top-k among those ids, as a brute-force scan of them does."""
    from glimpse.vectors.faiss import FaissIndex

    catalog, ids, vectors = filled
    milvus = MilvusIndex(str(tmp_path / "store.db"), catalog, KEY, DIM)
    milvus.upsert(ids, vectors)
    faiss_index = FaissIndex(tmp_path / "faiss", KEY, DIM)
    faiss_index.upsert(ids, vectors)
    among = ids[::3]
    query = vectors[7]
    expected = among[np.argsort(-(vectors[::3] @ query), kind="stable")][:5]
    for store in (milvus, faiss_index):
        result = store.search_among(query[None, :], 5, among)[0]
        assert result.ids.tolist() == expected.tolist(), type(store).__name__
        assert set(result.ids.tolist()) <= set(among.tolist())
    assert milvus.search_among(query[None, :], 5, np.arange(10_000)) is None  # too many ids for one expression


def test_video_frames_on_milvus_carry_their_videos_path(tmp_path, tiny_clip, monkeypatch):
    pytest.importorskip("av")
    import glimpse
    from glimpse.video import SamplingRules
    from video_fixtures import write_video

    root = Path(os.path.realpath(tmp_path / "media"))
    make_photos(root / "a", 2)
    write_video(root / "a" / "clip.mp4", [2.0, 2.0], gop=24)
    (root / "b").mkdir()
    write_video(root / "b" / "other.mp4", [2.0, 2.0], gop=24, first_scene=3)
    rules = SamplingRules(min_interval_s=1.0)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=str(tmp_path / "lib.db")) as lib:
        report = lib.index([root], video_rules=rules)
        assert report.videos == 2
        calls = spy_on_search(lib._vector_index(save=False), monkeypatch)
        query = lib.query_vector("a photo")
        in_a = lib.search_vector(query, 10, folder=root / "a")
        assert {h.path for h in in_a} == {str(root / "a" / n) for n in ("img_000.jpg", "img_001.jpg", "clip.mp4")}
        assert calls[-1][1] == {"path_prefix": [str(root / "a")]}  # the frames were filtered inside Milvus
        clip = next(h for h in in_a if h.kind == "video")
        assert clip.frames and all(lib.catalog.items_by_id([i])[i].file.id == clip.id for _, _, i in clip.frames)
        (root / "b" / "other.mp4").rename(root / "a" / "other.mp4")  # a move: the frames' rows get the new path
        assert lib.index([root], video_rules=rules).moved == 1
        moved = {h.path for h in lib.search_vector(query, 10, folder=root / "a", kind="video")}
        assert moved == {str(root / "a" / "clip.mp4"), str(root / "a" / "other.mp4")}
        assert calls[-1][1] == {"path_prefix": [str(root / "a")]}
