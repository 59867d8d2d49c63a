"""Capture metadata in the library: read once per content hash at indexing, backfilled for older rows, kept on
moves, re-read on changes, and the catalog's metadata filters (dates, camera, place)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import DROP_V5
from glimpse.errors import UserInputError
from glimpse.metadata import TAKEN_EXIF, TAKEN_MTIME
from glimpse.metafilter import MetadataFilter
from test_metadata import photo_exif


def exif_photo(path, seed: int, **exif_args) -> str:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((64, 48)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", **({"exif": photo_exif(**exif_args)} if exif_args else {}))
    return str(path)


def library_photos(root):
    return {
        "paris": exif_photo(root / "paris.jpg", 1, taken="2023:06:01 14:00:00", gps=(48.8584, "N", 2.2945, "E"),
                            make="Apple", model="iPhone 13"),
        "london": exif_photo(root / "london.jpg", 2, taken="2024:02:10 09:00:00", gps=(51.5007, "N", 0.1246, "W"),
                             make="Canon", model="Canon EOS R5"),
        "sydney": exif_photo(root / "sydney.jpg", 3, taken="2022:12:31 23:59:59", offset="+11:00",
                             gps=(33.8568, "S", 151.2153, "E"), make="SONY", model="ILCE-7M4"),
        "plain": exif_photo(root / "plain.jpg", 4),  # no EXIF at all
    }


def ids_by_name(lib) -> dict[str, int]:
    return {os.path.splitext(os.path.basename(r.path))[0]: r.id for r in lib.indexed_files()}


def test_indexing_reads_metadata_once_and_filters_use_it(tmp_path, open_lib):
    photos = library_photos(tmp_path / "photos")
    lib = open_lib()
    report = lib.index([tmp_path / "photos"])
    assert report.metadata_read == 4
    ids = ids_by_name(lib)
    meta = lib.catalog.metadata_of(ids.values())
    assert meta[ids["paris"]].taken_local == "2023-06-01T14:00:00" and meta[ids["paris"]].taken_source == TAKEN_EXIF
    assert meta[ids["sydney"]].utc_offset == 660 and meta[ids["sydney"]].latitude < 0
    assert meta[ids["plain"]].taken_source == TAKEN_MTIME and meta[ids["plain"]].camera is None
    assert lib.index([tmp_path / "photos"]).metadata_read == 0  # once per content

    def matching(**bounds) -> set[str]:
        found = lib.catalog.ids_matching(MetadataFilter.parse(**bounds))
        return {name for name, i in ids.items() if i in found}

    assert matching(after="2023-01", before="2024-06") == {"paris", "london"}
    assert matching(before="2023") == {"sydney"}  # its local date, whatever the offset
    assert matching(camera="iphone") == {"paris"}
    assert matching(camera="canon eos") == {"london"}
    assert matching(near="48.85,2.35,20km") == {"paris"}
    assert matching(near="48.85,2.35,400km") == {"paris", "london"}
    assert matching(near="-33.86,151.21,5km", after="2022-12") == {"sydney"}
    assert matching(after="2030") == set()
    assert photos  # every photo was made


def test_decoded_photos_bring_their_metadata_so_no_file_is_opened_again(tmp_path, open_lib, monkeypatch):
    """The pipeline reads the metadata from the EXIF its decode parsed (no serial pass opening every file again
    after the run), and it is what reading the header alone gives."""
    from glimpse import metadata_index
    from glimpse.metadata import read_file_metadata

    photos = library_photos(tmp_path / "photos")
    reopened: list[str] = []

    def counting(path: str, mtime_ns: int | None = None):
        reopened.append(path)
        return read_file_metadata(path, mtime_ns)

    monkeypatch.setattr(metadata_index, "read_file_metadata", counting)
    lib = open_lib()
    report = lib.index([tmp_path / "photos"])
    assert report.metadata_read == 4 and reopened == []
    ids = ids_by_name(lib)
    stored = lib.catalog.metadata_of(ids.values())
    for name, path in photos.items():
        assert stored[ids[name]] == read_file_metadata(path, os.stat(path).st_mtime_ns), name


def test_moves_keep_metadata_and_changes_reread_it(tmp_path, open_lib):
    library_photos(tmp_path / "photos")
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    paris_id = ids_by_name(lib)["paris"]
    os.rename(tmp_path / "photos" / "paris.jpg", tmp_path / "photos" / "moved.jpg")
    report = lib.index([tmp_path / "photos"])
    assert report.moved == 1 and report.metadata_read == 0
    assert lib.catalog.metadata_of([paris_id])[paris_id].camera == "Apple iPhone 13"
    exif_photo(tmp_path / "photos" / "moved.jpg", 1, taken="2021:01:02 03:04:05", make="Google", model="Pixel 8")
    assert lib.index([tmp_path / "photos"]).metadata_read == 1
    changed = lib.catalog.metadata_of([paris_id])[paris_id]
    assert (changed.taken_local, changed.camera) == ("2021-01-02T03:04:05", "Google Pixel 8")


def test_a_library_from_before_metadata_is_backfilled_without_re_encoding(tmp_path, open_lib):
    library_photos(tmp_path / "photos")
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    with lib.catalog.transaction() as db:  # as a catalog migrated from schema 4 has it: no metadata rows
        db.execute("DELETE FROM photo_meta")
    report = lib.index([tmp_path / "photos"])
    assert report.encoded == 0 and report.metadata_read == 4
    assert lib.catalog.metadata_counts() == {"read": 4, "dated": 3, "placed": 3}


def test_search_filters_sorts_and_shows_metadata(tmp_path, open_lib):
    library_photos(tmp_path / "photos")
    lib = open_lib()
    lib.index([tmp_path / "photos"])

    def names(hits) -> list[str]:
        return [os.path.splitext(os.path.basename(h.path))[0] for h in hits]

    everything = lib.search("a photo", k=10)
    assert len(everything) == 4 and all(h.meta is not None for h in everything)
    assert names(lib.search("a photo", k=10, where=MetadataFilter.parse(after="2023-01", before="2024-06"))) \
        == [n for n in names(everything) if n in ("paris", "london")]  # filtered, CLIP order kept
    assert names(lib.search("a photo", k=10, where=MetadataFilter.parse(camera="canon"))) == ["london"]
    assert names(lib.search("a photo", k=10, where=MetadataFilter.parse(near="48.85,2.35,20km"))) == ["paris"]
    # by date: newest capture first; the photo without EXIF has its mtime as "taken", which is the newest
    by_date = lib.search("a photo", k=10, sort="date")
    assert names(by_date) == ["plain", "london", "paris", "sydney"]
    paris = next(h for h in everything if h.path.endswith("paris.jpg"))
    assert paris.meta["camera"] == "Apple iPhone 13" and paris.to_dict()["meta"]["latitude"] == paris.meta["latitude"]
    similar = lib.similar(paris.path, k=10, where=MetadataFilter.parse(before="2024"))
    assert set(names(similar)) == {"paris", "sydney"}
    recent = lib.recent(10, where=MetadataFilter.parse(camera="sony"))
    assert names(recent) == ["sydney"]
    with pytest.raises(UserInputError, match="--sort"):
        lib.search("a photo", sort="size")


def test_cli_filters_and_errors(tmp_path, tiny_clip):
    from typer.testing import CliRunner

    from glimpse.cli import app

    library_photos(tmp_path / "photos")
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    runner = CliRunner()
    assert runner.invoke(app, [*base, "index", str(tmp_path / "photos")]).exit_code == 0
    result = runner.invoke(app, [*base, "search", "a photo", "--json", "--after", "2023", "--camera", "iphone"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [os.path.basename(h["path"]) for h in hits] == ["paris.jpg"]
    assert hits[0]["meta"]["taken_local"] == "2023-06-01T14:00:00"
    bad = runner.invoke(app, [*base, "search", "a photo", "--near", "48.85"])
    assert bad.exit_code == 1 and "--near" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(app, [*base, "search", "a photo", "--after", "2023-02-30"])
    assert bad.exit_code == 1 and "not a real date" in bad.output


def test_a_v4_catalog_migrates_and_is_backfilled(tmp_path, open_lib):
    import sqlite3

    from glimpse.catalog import SCHEMA_VERSION

    library_photos(tmp_path / "photos")
    lib = open_lib()
    lib.index([tmp_path / "photos"])
    lib.close()
    with sqlite3.connect(tmp_path / "library" / "catalog.sqlite3") as db:  # what a version-4 catalog is
        db.executescript(DROP_V5 + "UPDATE meta SET value = '4' WHERE key = 'schema_version';")
    lib = open_lib()
    assert lib.catalog.schema_version == SCHEMA_VERSION == 6
    report = lib.index([tmp_path / "photos"])
    assert report.encoded == 0 and report.metadata_read == 4
    assert names_matching(lib, camera="iphone") == {"paris"}


def names_matching(lib, **bounds) -> set[str]:
    found = lib.catalog.ids_matching(MetadataFilter.parse(**bounds))
    return {name for name, i in ids_by_name(lib).items() if i in found}


def test_metadata_filters_with_the_milvus_store(tmp_path, tiny_clip):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    import glimpse

    library_photos(tmp_path / "photos")
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip), store=str(tmp_path / "lib.db")) as lib:
        lib.index([tmp_path / "photos"])
        hits = lib.search("a photo", k=10, where=MetadataFilter.parse(after="2023-01", before="2024-06"))
        assert {os.path.basename(h.path) for h in hits} == {"paris.jpg", "london.jpg"}
        with glimpse.open_library(tmp_path / "lib-faiss", model=str(tiny_clip)) as on_faiss:
            on_faiss.index([tmp_path / "photos"])
            same = on_faiss.search("a photo", k=10, where=MetadataFilter.parse(after="2023-01", before="2024-06"))
        assert [os.path.basename(h.path) for h in hits] == [os.path.basename(h.path) for h in same]
