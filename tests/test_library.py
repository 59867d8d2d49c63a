"""End-to-end library behaviour with a tiny random CLIP: indexing, incremental runs, search, removal."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from conftest import make_photo, make_photos
from glimpse.errors import LibraryBusyError, UserInputError
from glimpse.library import EmptyLibraryError


def test_image_search_finds_itself_first(open_lib, tmp_path):
    photos = make_photos(tmp_path / "pics", 12)
    lib = open_lib()
    report = lib.index([tmp_path / "pics"])
    assert (report.added, report.encoded, report.failed) == (12, 12, 0)
    for photo in photos[:4]:
        hits = lib.similar(photo, k=5)
        assert hits[0].path == str(photo)
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # by id too
    assert lib.similar(hits[0].id, k=1)[0].id == hits[0].id


def test_same_query_same_ranking(open_lib, tmp_path):
    make_photos(tmp_path / "pics", 10)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    first = lib.search("a dog running on the beach", k=10)
    second = lib.search("a dog running on the beach", k=10)
    assert [h.id for h in first] == [h.id for h in second]
    assert len(first) == 10
    assert [h.score for h in first] == sorted((h.score for h in first), reverse=True)
    # min-score filters, k limits
    cut = first[4].score
    assert all(h.score >= cut for h in lib.search("a dog running on the beach", k=10, min_score=cut))
    assert len(lib.search("a dog running on the beach", k=3)) == 3


def test_query_arithmetic_changes_the_vector(open_lib, tmp_path):
    make_photos(tmp_path / "pics", 4)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    plain = lib.query_vector("beach")
    mixed = lib.query_vector("beach +sunset -people")
    weighted = lib.query_vector("2:beach +sunset -people")
    assert np.linalg.norm(mixed) == pytest.approx(1.0, abs=1e-5)
    encoded = lib.encoder.encode_texts(["beach", "sunset", "people"])
    expected = encoded[0] + encoded[1] - encoded[2]
    np.testing.assert_allclose(mixed, expected / np.linalg.norm(expected), atol=1e-5)
    assert not np.allclose(plain, mixed) and not np.allclose(mixed, weighted)


def test_incremental_only_reencodes_changes(open_lib, tmp_path):
    pics = tmp_path / "pics"
    photos = make_photos(pics, 8)
    lib = open_lib()
    lib.index([pics])
    assert lib.encoder.images_encoded == 8

    # nothing changed: nothing encoded
    report = lib.index([pics])
    assert (report.unchanged, report.encoded, lib.encoder.images_encoded) == (8, 0, 8)

    # add 2, modify 1, delete 1, rename 1, touch 1 (mtime only)
    make_photos(pics, 2, start=100)
    make_photo(photos[0], seed=500)
    os.utime(photos[0], ns=(time.time_ns(), time.time_ns() + 10_000_000))
    photos[1].unlink()
    renamed = pics / "sub" / "renamed.jpg"
    renamed.parent.mkdir()
    shutil.move(photos[2], renamed)
    os.utime(photos[3], ns=(time.time_ns(), time.time_ns() + 20_000_000))
    before = lib.encoder.images_encoded
    report = lib.index([pics])
    assert lib.encoder.images_encoded - before == 3  # 2 new + 1 modified; rename and touch cost nothing
    assert (report.added, report.moved, report.removed) == (2, 1, 1)
    assert report.updated == 2  # the modified and the touched one
    hits = lib.similar(renamed, k=1)
    assert hits[0].path == str(renamed) and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert lib.status().images == 9
    assert lib.status().index_vectors == 9


def test_copies_reuse_the_stored_vector(open_lib, tmp_path):
    pics = tmp_path / "pics"
    photos = make_photos(pics, 3)
    lib = open_lib()
    lib.index([pics])
    shutil.copy(photos[0], pics / "copy.jpg")
    report = lib.index([pics])
    assert (report.added, report.reused, report.encoded) == (1, 1, 0)
    hits = lib.similar(pics / "copy.jpg", k=2)
    assert {h.path for h in hits} == {str(photos[0]), str(pics / "copy.jpg")}


def test_remove_forgets_folder(open_lib, tmp_path):
    make_photos(tmp_path / "pics" / "keep", 3)
    make_photos(tmp_path / "pics" / "old", 4, start=10)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    assert lib.remove([tmp_path / "pics" / "old"]) == 4
    assert all("/pics/old/" not in h.path for h in lib.search("anything", k=10))
    assert lib.status().index_vectors == 3
    with pytest.raises(UserInputError, match="not in the library"):
        lib.remove([tmp_path / "elsewhere"])


def test_two_models_keep_their_own_vectors(open_lib, tmp_path, tiny_clip_b):
    make_photos(tmp_path / "pics", 5)
    lib_a = open_lib()
    lib_a.index([tmp_path / "pics"])
    lib_b = open_lib(model=tiny_clip_b)
    with pytest.raises(EmptyLibraryError, match="index PATH"):
        lib_b.search("cat")
    report = lib_b.index([tmp_path / "pics"])
    assert report.encoded == 5
    assert len(lib_b.search("cat", k=10)) == 5
    assert lib_a.spec.key != lib_b.spec.key
    assert {m["key"] for m in lib_b.status().models} == {lib_a.spec.key, lib_b.spec.key}


def test_indexing_lock(open_lib, tmp_path):
    make_photos(tmp_path / "pics", 1)
    lib = open_lib()
    with lib._writer_lock(), pytest.raises(LibraryBusyError, match="another glimpse process"):
        open_lib().index([tmp_path / "pics"])


def test_missing_path_is_a_clear_error(open_lib, tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        open_lib().index([tmp_path / "nope"])


def test_hostile_corpus(open_lib, tmp_path):
    from hostile import make_hostile_corpus

    corpus = make_hostile_corpus(tmp_path / "hostile")
    lib = open_lib()
    report = lib.index([tmp_path / "hostile"])
    reasons = {os.fsencode(path): reason for path, reason in report.errors}
    # a directory named like an image is walked as a directory, not reported as a broken file
    bad = [item for item in corpus.bad if not os.path.isdir(item.raw)]
    for item in bad:
        assert item.raw in reasons, f"{item.key} ({item.path!r}) was not reported"
        assert item.reason in reasons[item.raw], (item.key, reasons[item.raw])
    assert len(reasons) == len(bad)  # nothing else was reported: ignored files stay silent
    records = lib.catalog.files_under(str(tmp_path / "hostile"))
    indexed = {os.fsencode(r.path) for r in records.values() if r.state == "ok"}
    assert {item.raw for item in corpus.good} == indexed
    for item in corpus.good:
        hits = lib.similar(item.path, k=1)
        assert os.fsencode(hits[0].path) == item.raw, item.key
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    # a second run re-reads nothing and re-reports nothing
    again = lib.index([tmp_path / "hostile"])
    assert (again.encoded, again.failed, again.added) == (0, 0, 0)
    assert lib.status().errors == len(bad)
