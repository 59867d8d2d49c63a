"""The vector index is used only when it is its catalog's and intact; otherwise it is rebuilt with a notice.

Covers: an index left from a deleted catalog, an index ahead of its catalog, a damaged index body (read fully:
checksum; memory-mapped: sampled vectors), damaged manifests, ``index/`` being a file, a full disk while
saving, readers that must never write, and IVF searches asking for more results than the probed lists hold.
"""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from glimpse.catalog import STATE_OK, Catalog, FileUpdate
from glimpse.vectors import faiss as faiss_mod
from glimpse.vectors import select, text_probes
from glimpse.vectors.base import IndexStorageError
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.sync import describe_store, index_problem, open_index, rebuild_store, sync_index
from glimpse.vectors.synthetic import clustered_embeddings

KEY = "synthetic-32"
DIM = 32


def new_catalog(path: Path, vectors: np.ndarray, names: list[str] | None = None) -> Catalog:
    """A catalog at ``path`` holding ``vectors`` as files /r/<name>.jpg (file ids 1..n in order)."""
    catalog = Catalog(path)
    catalog.register_model(KEY, "synthetic", DIM, {})
    names = names or [str(i) for i in range(len(vectors))]
    catalog.apply([FileUpdate(f"/r/{name}.jpg", 1, 1, STATE_OK, hash=f"h{name}", vector=v)
                   for name, v in zip(names, vectors, strict=True)], KEY)
    return catalog


def assert_holds_catalog(index: FaissIndex, catalog: Catalog) -> None:
    """Every vector in ``index`` is the catalog's vector of the same file id, and nothing else is in it."""
    ids, vectors = catalog.embeddings(KEY)
    assert sorted(index.ids().tolist()) == ids.tolist()
    stored = np.stack([index.native.reconstruct(int(i)) for i in ids])
    assert np.allclose(stored, vectors, atol=0.02)  # within SQ8 precision for IVF, exact for Flat


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "glimpse" and r.levelno == logging.WARNING]


@pytest.fixture()
def vectors() -> np.ndarray:
    return clustered_embeddings(400, DIM, clusters=8, seed=1)


@pytest.fixture()
def catalog(tmp_path, vectors):
    cat = new_catalog(tmp_path / "catalog.sqlite3", vectors)
    yield cat
    cat.close()


def delete_catalog(catalog: Catalog) -> None:
    catalog.close()
    for leftover in catalog.path.parent.glob(catalog.path.name + "*"):
        leftover.unlink()


# -- item 2: bound to its catalog --------------------------------------------------------------------------
def test_index_of_a_deleted_catalog_is_rebuilt_for_the_new_one(tmp_path, catalog, vectors, caplog):
    """The issue's steps: delete catalog.sqlite3*, change a file, re-index. Same count, same change ids, but
    the new catalog numbers the files in another order: the old index would attach vectors to other files."""
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    delete_catalog(catalog)
    changed = vectors[::-1].copy()
    changed[0] = clustered_embeddings(1, DIM, seed=9)[0]
    fresh = new_catalog(tmp_path / "catalog.sqlite3", changed, names=[str(i) for i in reversed(range(400))])
    assert fresh.last_change() == 400 and fresh.catalog_id != json.loads((directory / f"{KEY}.json").read_text()).get(
        "catalog_id", "none recorded")
    index = open_index(directory, fresh, KEY, DIM)
    assert_holds_catalog(index, fresh)
    assert any("another catalog" in n and "rebuilt" in n for n in notices(caplog))
    # similar(file 1) finds file 1 at 1.0, not the file the old catalog gave id 1
    assert index.search(changed[1:2], 1)[0].ids.tolist() == [2]
    assert json.loads(index.manifest_path.read_text())["catalog_id"] == fresh.catalog_id
    fresh.close()


def test_catalog_id_alone_refuses_a_foreign_index(tmp_path, catalog, vectors, caplog):
    """Even an index whose vectors happen to match is not reused with another catalog."""
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    delete_catalog(catalog)
    twin = new_catalog(tmp_path / "catalog.sqlite3", vectors)
    loaded = FaissIndex.load(directory, KEY, DIM)
    assert index_problem(loaded, twin) == "was built from another catalog (its catalog was replaced)"
    open_index(directory, twin, KEY, DIM)
    assert any("another catalog" in n for n in notices(caplog))
    assert index_problem(FaissIndex.load(directory, KEY, DIM), twin) is None  # the rebuilt one is bound to it
    twin.close()


def test_index_ahead_of_its_catalog_is_rebuilt(tmp_path, catalog, caplog):
    directory = tmp_path / "index"
    index = open_index(directory, catalog, KEY, DIM)
    index.applied_change = catalog.last_change() + 50  # e.g. the catalog was restored from an older copy
    index.save()
    reopened = open_index(directory, catalog, KEY, DIM)
    assert reopened.applied_change == catalog.last_change()
    assert any("last change is 400" in n for n in notices(caplog))


def test_count_mismatch_after_catch_up_is_rebuilt_with_a_notice(tmp_path, catalog, caplog):
    directory = tmp_path / "index"
    index = open_index(directory, catalog, KEY, DIM)
    index.remove(np.array([5, 6]))  # lost vectors the change log knows nothing about
    assert sync_index(index, catalog)
    assert len(index) == 400 and any("holds 398 vectors but the catalog has 400" in n for n in notices(caplog))


def test_unbound_index_from_before_catalog_ids_is_vetted_by_sampling(tmp_path, catalog, vectors):
    """A version-1 manifest has no catalog id: kept when the sampled vectors match, rebuilt when they do not."""
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    manifest_path = directory / f"{KEY}.json"
    manifest = json.loads(manifest_path.read_text())
    for field in ("catalog_id", "checksum"):
        del manifest[field]
    manifest["manifest_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    assert index_problem(FaissIndex.load(directory, KEY, DIM), catalog) is None
    # the same unbound index beside a catalog whose files carry other vectors
    other = new_catalog(tmp_path / "other.sqlite3", vectors[::-1].copy())
    assert "another vector than the catalog" in index_problem(FaissIndex.load(directory, KEY, DIM), other)
    other.close()


# -- item 4: a damaged index body -----------------------------------------------------------------------------
def write_garbage(path: Path, offset: int, size: int, seed: int = 0) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.random.default_rng(seed).bytes(size))


def test_damaged_body_is_caught_by_its_checksum_and_rebuilt(tmp_path, catalog, vectors, caplog):
    """The issue's damage: 4 KB of garbage at offset 200 (inside the vectors: the file still parses)."""
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    write_garbage(directory / f"{KEY}.faiss", 200, 4096)
    kind, count = describe_store(None, directory, catalog, KEY, DIM)
    assert "not usable" in kind and "checksum" in kind and count == 0  # status no longer says all is well
    reader = open_index(directory, catalog, KEY, DIM, save=False)
    assert_holds_catalog(reader, catalog)
    assert reader.search(vectors[:20], 1)[0].scores[0] <= 1.0 + 1e-5
    assert any("checksum" in n and "in memory" in n for n in notices(caplog))
    writer = open_index(directory, catalog, KEY, DIM)
    assert_holds_catalog(writer, catalog)
    assert "not usable" not in describe_store(None, directory, catalog, KEY, DIM)[0]


def test_damaged_memory_mapped_index_is_caught_by_sampling(tmp_path, catalog, vectors, caplog, monkeypatch):
    """A memory-mapped (big) index is not read to check it: sampled catalog vectors must be in it."""
    directory = tmp_path / "index"
    select.save_policy(catalog, KEY, select.IndexPolicy(kind="IVF8,SQ8"))
    built = open_index(directory, catalog, KEY, DIM)
    assert built.factory == "IVF8,SQ8"
    monkeypatch.setattr(faiss_mod, "MMAP_MIN_BYTES", 0)  # map even this small file, as a search of a big one does
    path = directory / f"{KEY}.faiss"
    centroids = np.ascontiguousarray(built.native.quantizer.reconstruct_n(0, 8), dtype=np.float32).tobytes()
    offset = path.read_bytes().find(centroids)
    assert offset > 0
    write_garbage(path, offset, len(centroids))  # every list's centroid: every vector decodes to garbage
    reader = open_index(directory, catalog, KEY, DIM, save=False)
    assert_holds_catalog(reader, catalog)
    assert any("another vector than the catalog" in n for n in notices(caplog))


def test_sampled_check_accepts_lossy_codes_and_rejects_other_vectors(tmp_path, vectors):
    ids = np.arange(1, 401, dtype=np.int64)
    for factory in ("Flat", "IVF8,Flat", "IVF8,SQ8", "IVF8,PQ8"):
        index = FaissIndex(tmp_path, KEY, DIM, factory)
        select.train(index, vectors)
        index.upsert(ids, vectors)
        assert index.verify_vectors(ids, vectors) is None, factory
        assert "another vector" in index.verify_vectors(ids[:20], vectors[20:40]), factory
        assert "lacks the vector of file id 999" in index.verify_vectors(np.array([999]), vectors[:1])
    for factory in ("Flat", "IVF8,Flat"):
        huge = FaissIndex(tmp_path, KEY, DIM, factory)
        select.train(huge, vectors)
        huge.upsert(ids, vectors)
        huge.upsert(np.array([1000]), 1e30 * vectors[:1])  # garbage of a huge norm: a search finds it first
        assert "scores a search" in huge.verify_vectors(ids[:4], vectors[:4]), factory


# -- item 5: manifests, folders, full disks, read-only libraries ---------------------------------------------
@pytest.mark.parametrize("damage", [
    "[1, 2]", "null", "{", '"just a string"',
    {"applied_change": "abc"}, {"applied_change": -3}, {"applied_change": True}, {"count": "many"},
    {"search_params": "nprobe=banana"}, {"search_params": 42}, {"search_params": "nprobe=0"},
    {"chosen_by": [1]}, {"factory": "IVF8,SQ8"}, {"model_key": None}, {"dim": "32"},
])
def test_damaged_manifest_means_rebuild_with_a_notice(tmp_path, catalog, damage, caplog):
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    manifest_path = directory / f"{KEY}.json"
    if isinstance(damage, dict):
        manifest = json.loads(manifest_path.read_text())
        manifest.update(damage)
        manifest_path.write_text(json.dumps(manifest))
    else:
        manifest_path.write_text(damage)
    index = open_index(directory, catalog, KEY, DIM)
    assert_holds_catalog(index, catalog)
    messages = notices(caplog)
    assert len(messages) == 1 and "\n" not in messages[0] and "rebuilt it from the catalog" in messages[0]
    assert open_index(directory, catalog, KEY, DIM) is not None and len(notices(caplog)) == 1  # repaired on disk


def test_ivf_manifest_with_bad_search_params_is_rebuilt(tmp_path, catalog, caplog):
    directory = tmp_path / "index"
    select.save_policy(catalog, KEY, select.IndexPolicy(kind="IVF8,SQ8"))
    open_index(directory, catalog, KEY, DIM)
    manifest_path = directory / f"{KEY}.json"
    manifest = json.loads(manifest_path.read_text())
    for bad, reason in (("nprobe=2,bogus_knob=3", "refuses"), ("nprobe=0", "unusable")):
        manifest["search_params"] = bad
        manifest_path.write_text(json.dumps(manifest))
        index = open_index(directory, catalog, KEY, DIM)
        assert index.factory == "IVF8,SQ8" and index.search_params.startswith("nprobe=")
        assert index.search(np.zeros(DIM, dtype=np.float32) + 0.1, 5)[0].ids.size == 5
        assert any("search_params" in n and reason in n for n in notices(caplog))


def test_missing_index_file_beside_its_manifest_is_rebuilt(tmp_path, catalog, caplog):
    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    (directory / f"{KEY}.faiss").unlink()
    assert_holds_catalog(open_index(directory, catalog, KEY, DIM), catalog)
    assert any("is missing" in n for n in notices(caplog))


def test_index_folder_that_is_a_file_is_a_clear_error(tmp_path, catalog):
    directory = tmp_path / "index"
    directory.write_text("not a folder")
    for opened in (lambda: open_index(directory, catalog, KEY, DIM, save=False),
                   lambda: open_index(directory, catalog, KEY, DIM),
                   lambda: rebuild_store(None, directory, catalog, KEY, DIM)):
        with pytest.raises(IndexStorageError, match=r"is a file.*move the file away"):
            opened()
    assert "is a file" in describe_store(None, directory, catalog, KEY, DIM)[0]
    assert directory.read_text() == "not a folder"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("failing", ["fsync", "write_index"])
def test_disk_full_while_saving_keeps_the_old_index_and_no_temporaries(tmp_path, catalog, vectors, failing,
                                                                       monkeypatch):
    import faiss

    directory = tmp_path / "index"
    open_index(directory, catalog, KEY, DIM)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    new_catalog_files = [FileUpdate(f"/r/new{i}.jpg", 1, 1, STATE_OK, hash=f"n{i}", vector=v)
                         for i, v in enumerate(vectors[:10])]
    catalog.apply(new_catalog_files, KEY)
    if failing == "fsync":
        monkeypatch.setattr(faiss_mod.os, "fsync", no_space)
    else:
        real_write = faiss.write_index

        def write_half_then_fail(index, path):  # faiss raises RuntimeError when its fwrite comes up short
            real_write(index, path)
            with open(path, "r+b") as fh:
                fh.truncate(100)
            raise RuntimeError("Error in faiss::FileIOWriter: write error (28 != 4096)")

        monkeypatch.setattr(faiss, "write_index", write_half_then_fail)
    with pytest.raises(IndexStorageError) as caught:
        open_index(directory, catalog, KEY, DIM)
    message = str(caught.value)
    assert "\n" not in message and "cannot save the vector index" in message and "previous index is kept" in message
    if failing == "fsync":
        assert "No space left on device" in message and "free some disk space" in message
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # nothing half-written, no .tmp
    monkeypatch.undo()
    # the next run catches up from the intact old pair
    assert_holds_catalog(open_index(directory, catalog, KEY, DIM), catalog)


def forbid_writes(monkeypatch) -> None:
    """Make every way the vector code writes files fail the test (as root, chmod cannot show this)."""
    import faiss

    def refuse(*args, **kwargs):
        pytest.fail(f"a reader tried to write: {args!r}")

    monkeypatch.setattr(faiss, "write_index", refuse)
    monkeypatch.setattr(text_probes, "atomic_write", refuse)
    monkeypatch.setattr(Path, "mkdir", refuse)
    monkeypatch.setattr(faiss_mod.os, "replace", refuse)


def test_readers_never_write_even_when_rebuilding(tmp_path, catalog, vectors, monkeypatch, caplog):
    """A read-only library is searchable: a reader builds a missing or damaged index in memory only."""
    directory = tmp_path / "index"
    select.save_policy(catalog, KEY, select.IndexPolicy(flat_limit=100))  # an IVF index, tuned for text probes
    encoder = SimpleNamespace(spec=SimpleNamespace(languages=("en",)), key=KEY, dim=DIM,
                              encode_texts=lambda prompts: clustered_embeddings(len(prompts), DIM, seed=5))

    def unwritable(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(text_probes, "atomic_write", unwritable)  # the probe cache cannot be written
    monkeypatch.setattr(Path, "mkdir", unwritable)
    probes = lambda: text_probes.text_probe_vectors(encoder, directory)  # noqa: E731
    missing = open_index(directory, catalog, KEY, DIM, save=False, text_queries=probes)
    assert missing.factory.startswith("IVF") and not directory.exists()
    assert_holds_catalog(missing, catalog)

    monkeypatch.undo()
    open_index(directory, catalog, KEY, DIM, text_queries=probes)  # a writer saves it
    (directory / f"{KEY}.json").write_text("null")
    forbid_writes(monkeypatch)
    damaged = open_index(directory, catalog, KEY, DIM, save=False, text_queries=probes)
    assert_holds_catalog(damaged, catalog)
    assert any("in memory" in n for n in notices(caplog))


# -- item 15: IVF searches return k results --------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["IVF32,SQ8", "IVF64_HNSW32,Flat"])
def test_ivf_search_returns_k_results_even_beyond_the_probed_lists(tmp_path, factory):
    """``search -k 2000`` over 1852 vectors found 504: the tuned nprobe lists hold fewer than k vectors."""
    vectors = clustered_embeddings(1852, DIM, clusters=16, seed=4)
    ids = np.arange(1852, dtype=np.int64) * 3 + 1
    index = FaissIndex(tmp_path, KEY, DIM, factory)
    select.train(index, vectors)
    index.upsert(ids, vectors)
    index.set_search_params("nprobe=1" + (",quantizer_efSearch=64" if "HNSW" in factory else ""))
    narrow = index.native.search(vectors[:3], 600)[1]
    assert ((narrow >= 0).sum(axis=1) < 600).all()  # the setting alone falls short
    for k, expected in ((2000, 1852), (600, 600)):
        for result in index.search(vectors[:3], k):
            assert len(result.ids) == expected == len(set(result.ids.tolist()))
            assert set(result.ids.tolist()) <= set(ids.tolist())
            assert (np.diff(result.scores) <= 1e-6).all()  # still best first
    one = index.search(vectors[7], 2000)[0]
    assert len(one.ids) == 1852 and one.ids[0] == ids[7]
    assert index.search_params.startswith("nprobe=1")  # the index's own setting is unchanged


# -- through the library, as the issue reproduced it -------------------------------------------------------------
def test_reindexing_after_deleting_the_catalog_attaches_every_vector_to_its_file(tmp_path, tiny_clip, caplog):
    """Delete catalog.sqlite3* (as the catalog error advises), change one file, re-index: `similar` of each image
    finds that image at 1.0, not another one."""
    import glimpse
    from conftest import make_photo, make_photos

    photos = make_photos(tmp_path / "photos", 8)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([tmp_path / "photos"])
    for leftover in (tmp_path / "lib").glob("catalog.sqlite3*"):
        leftover.unlink()
    make_photo(photos[3], seed=99)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([tmp_path / "photos"])
        for photo in photos:
            best = lib.similar(photo, k=1)[0]
            assert best.path == str(photo.resolve()) and best.score == pytest.approx(1.0, abs=1e-4)
    assert any("another catalog" in n for n in notices(caplog))
