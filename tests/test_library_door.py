"""The Library's public door for the edges and features: writing(), a borrowed encoder, search pages with
``offset``/``accept``, ``recent`` with filters, ``Library.from_settings``."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from conftest import make_photos
from glimpse.errors import LibraryBusyError, UserInputError
from glimpse.library import Library
from glimpse.settings import LibrarySettings


def test_search_pages_and_accept(tmp_path, open_lib):
    make_photos(tmp_path / "photos", 8)
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    whole = lib.search("a red car", k=8)
    assert [h.id for h in lib.search("a red car", k=3, offset=2)] == [h.id for h in whole[2:5]]
    odd = [h for h in whole if int(os.path.basename(h.path)[4:7]) % 2]
    hits = lib.search("a red car", k=2, offset=1, accept=lambda p: int(os.path.basename(p)[4:7]) % 2 == 1)
    assert [h.id for h in hits] == [h.id for h in odd[1:3]]
    assert lib.search("a red car", k=5, offset=7) == whole[7:8]
    with pytest.raises(UserInputError, match="offset"):
        lib.search("a red car", k=2, offset=-1)


def test_recent_is_newest_first_and_filtered(tmp_path, open_lib):
    make_photos(tmp_path / "a", 2)
    make_photos(tmp_path / "b", 2, start=2)
    lib = open_lib()
    lib.index([tmp_path / "a"])
    time.sleep(0.01)
    lib.index([tmp_path / "b"])
    names = [os.path.relpath(h.path, tmp_path) for h in lib.recent(10)]
    assert sorted(names[:2]) == ["b/img_002.jpg", "b/img_003.jpg"] and sorted(names[2:]) == ["a/img_000.jpg",
                                                                                            "a/img_001.jpg"]
    assert [h.id for h in lib.recent(2, offset=1)] == [h.id for h in lib.recent(10)[1:3]]
    assert {os.path.dirname(h.path) for h in lib.recent(10, folder=tmp_path / "a")} == {str(tmp_path / "a")}
    assert [h.path for h in lib.recent(10, accept=lambda p: p.endswith("1.jpg"))] == [str(tmp_path / "a" /
                                                                                        "img_001.jpg")]
    with pytest.raises(UserInputError, match="not an indexed folder"):
        lib.recent(5, folder=tmp_path / "c")  # outside every root: nothing could match


def test_writing_holds_the_lock_and_saves_the_index(tmp_path, open_lib):
    make_photos(tmp_path / "photos", 3)
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    other = open_lib()
    with lib.writing() as catalog:
        with pytest.raises(LibraryBusyError), other.writing():
            pass
        doomed = catalog.file_by_path(str(tmp_path / "photos" / "img_000.jpg"))
        catalog.delete_files([doomed.id])
    fresh = open_lib()  # a new process: the saved index already left the file out
    assert len(fresh.search("a red car", k=10)) == 2


def test_a_borrowed_encoder_is_shared_not_closed(tmp_path, open_lib):
    make_photos(tmp_path / "photos", 2)
    owner = open_lib()
    owner.index([tmp_path / "photos"])
    settings = LibrarySettings(owner.directory, owner.model_name)
    borrower = Library.from_settings(settings, encoder=owner.encoder)
    assert borrower.encoder is owner.encoder and borrower.spec == owner.spec
    hits = borrower.search("a red car", k=2)
    borrower.close()
    np.testing.assert_allclose(owner.query_vector("a red car"), borrower.query_vector("a red car"))
    assert [h.id for h in owner.search("a red car", k=2)] == [h.id for h in hits]
    with pytest.raises(UserInputError, match="--store 'redis://x'"):
        Library.from_settings(LibrarySettings(owner.directory, store="redis://x"))
