"""One freshness rule (``Library.vectors``): a stored vector answers for a file only while the file still has
the content it was encoded from. classify, dupes, tags and similar all go through it, so a file changed since
indexing is re-encoded by each of them alike, and a touched or copied file is not."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from typer.testing import CliRunner

from conftest import make_photo, make_photos
from glimpse.cli import app
from glimpse.images import open_image


def _fresh(lib, path) -> np.ndarray:
    return lib.encoder.encode_images([open_image(path, min_side=lib.spec.preprocess.min_side).image])[0]


def test_vectors_reuse_only_current_content(tmp_path, open_lib):
    photos = make_photos(tmp_path / "photos", 3)
    open_lib().index([tmp_path / "photos"])
    lib = open_lib()  # as a new process would: nothing encoded yet
    found = lib.vectors([tmp_path / "photos"])
    assert (found.stored, found.encoded, found.errors) == (3, 0, [])
    assert "encoder" not in lib.__dict__  # all stored: the model is not even loaded

    os.utime(photos[1], ns=(1, 1))  # touched, same content: its hash still matches
    make_photo(photos[0], seed=99)  # new content under the old name
    shutil.copy(photos[2], tmp_path / "photos" / "copy.jpg")  # not indexed, but a copy of an indexed file
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not an image")
    found = lib.vectors([tmp_path / "photos"])
    rows = {os.path.basename(p): i for i, p in enumerate(found.paths)}
    assert found.stored == 3 and found.encoded == 1  # img_001 (touched), img_002, copy.jpg; img_000 encoded
    assert [e["path"] for e in found.errors] == [str(tmp_path / "photos" / "broken.jpg")]
    np.testing.assert_allclose(found.vectors[rows["img_000.jpg"]], _fresh(lib, photos[0]), atol=1e-5)
    np.testing.assert_array_equal(found.vectors[rows["copy.jpg"]], found.vectors[rows["img_002.jpg"]])
    assert found.ids[rows["copy.jpg"]] is None and found.stored_from[rows["copy.jpg"]] == found.ids[rows["img_002.jpg"]]
    # The whole library follows the same rule; a file gone since indexing is reported, not answered.
    photos[1].unlink()
    whole = lib.vectors()
    assert sorted(os.path.basename(p) for p in whole.paths) == ["img_000.jpg", "img_002.jpg"]
    assert whole.encoded == 1 and [os.path.basename(e["path"]) for e in whole.errors] == ["img_001.jpg"]
    np.testing.assert_allclose(lib.image_vector(photos[0]), _fresh(lib, photos[0]), atol=1e-5)


def test_classify_dupes_and_tags_re_encode_a_changed_file_alike(tmp_path, tiny_clip, small_vocab):
    photos = make_photos(tmp_path / "photos", 3)
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    assert runner.invoke(app, [*base, "index", str(tmp_path / "photos")]).exit_code == 0
    # img_000 now holds img_002's picture (decoded pixels equal, bytes re-encoded by the JPEG writer).
    make_photo(photos[0], seed=2)

    result = runner.invoke(app, [*base, "classify", str(tmp_path / "photos"), "--labels", "cat,dog,bird", "--json"])
    assert result.exit_code == 0, result.output
    by_name = {os.path.basename(r["path"]): r for r in json.loads(result.stdout)}
    assert by_name["img_000.jpg"]["top"] == by_name["img_002.jpg"]["top"]

    result = runner.invoke(app, [*base, "dupes", "--level", "semantic", "--threshold", "0.999", "--json"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)["groups"]
    names = [sorted(os.path.basename(m["path"]) for m in [g["keep"], *g["duplicates"]]) for g in groups]
    assert names == [["img_000.jpg", "img_002.jpg"]]  # with the stale vector img_000 would match nothing

    from glimpse.library import open_library
    from glimpse.tagging.library_tags import tag_library

    with open_library(tmp_path / "lib", str(tiny_clip)) as lib:
        report = tag_library(lib, threshold=0.0, only=["dog", "cat", "car"])
        assert report.tagged == 3 and report.failed == 0
        ids = {os.path.basename(r.path): r.id for r in lib.indexed_files()}
        tags = lib.catalog.tags_of(ids.values())
    assert tags[ids["img_000.jpg"]] == tags[ids["img_002.jpg"]] != tags[ids["img_001.jpg"]]
