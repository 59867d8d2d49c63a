"""Search filters (folder, tags, no-tags) on the embedded FAISS store, through the Python API and the CLI.

The FAISS store cannot filter, so ``Library`` filters its results and widens the search until ``k`` hits
pass. The same layout and expectations drive the Milvus tests (tests/test_milvus.py), where the filters run
inside the store. Expectations are computed here by brute force from the catalog's vectors and the layout
below, independently of the library's filter code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_photo, make_photos
from glimpse.errors import UserInputError

# folder (relative to the photo root) → number of photos; "a/b" vs "a/bc" is the prefix edge case, and the
# two "x/caf…" folders differ only in a byte that is not UTF-8 vs U+FFFD, which print the same.
LAYOUT: dict[str, int] = {
    "a/b": 4, "a/b/sub": 2, "a/bc": 4, "other": 8,
    os.fsdecode(b"x/caf\xe9"): 1, "x/caf\ufffd": 1,
}
LINKED = "linked"  # a symlink inside the root to a folder outside it: stored paths go through the link


def photo_tags(n: int) -> list[str]:
    """Tags of the n-th photo: mixed case on purpose (tag filters are ASCII case-insensitive)."""
    return (["Dog"] if n % 2 == 0 else []) + (["cat"] if n % 3 == 0 else [])


def make_filter_photos(root: Path, outside: Path) -> list[Path]:
    """The LAYOUT under ``root`` plus one photo reached through ``root/linked`` → ``outside``; in creation order."""
    photos: list[Path] = []
    for folder, count in LAYOUT.items():
        photos += make_photos(root / folder, count, start=len(photos))
    photos.append(make_photo(outside / "far.jpg", seed=len(photos)))
    (root / LINKED).symlink_to(outside, target_is_directory=True)
    return [*photos[:-1], root / LINKED / "far.jpg"]


def put_test_tags(catalog: Any, photos: list[Path]) -> dict[int, tuple[bytes, frozenset[str]]]:
    """Store ``photo_tags`` for each photo; returns ``{id: (path bytes, lower-case tags)}`` of every photo."""
    ids = [catalog.file_by_path(str(p)).id for p in photos]
    catalog.put_tags([(i, None, [(t, 0.9) for t in photo_tags(n)]) for n, i in enumerate(ids)], source="test")
    return {i: (os.fsencode(p), frozenset(t.lower() for t in photo_tags(n))) for n, (i, p) in
            enumerate(zip(ids, photos, strict=True))}


def expected_ids(lib: Any, files: dict[int, tuple[bytes, frozenset[str]]], vector: np.ndarray, *,
                 folder: str | os.PathLike[str] | None = None, tags: tuple[str, ...] | list[str] = (),
                 no_tags: tuple[str, ...] | list[str] = ()) -> list[int]:
    """Every matching id, best first, ranked exactly over the catalog's vectors."""
    ids, vectors = lib.catalog.embeddings(lib.spec.key)
    inside = os.fsencode(os.path.abspath(os.path.expanduser(os.fspath(folder)))) + b"/" if folder else b""

    def keep(i: int) -> bool:
        path, have = files[i]
        return (path.startswith(inside) and all(t.lower() in have for t in tags)
                and not any(t.lower() in have for t in no_tags))

    order = np.argsort(-(vectors @ vector), kind="stable")
    return [int(ids[j]) for j in order if keep(int(ids[j]))]


def filter_cases(root: Path) -> list[dict[str, Any]]:
    """Filter combinations for ``Library.search_vector``: folders (edge cases included), tags, both."""
    return [
        {"folder": root / "a" / "b"}, {"folder": f"{root}/a/b/"}, {"folder": root / "a" / "bc"},
        {"folder": root / "a"}, {"folder": root / "a" / "b" / "sub"}, {"folder": root / LINKED},
        {"folder": root / os.fsdecode(b"x/caf\xe9")}, {"folder": root / "x" / "caf\ufffd"},
        {"tags": ["dog"]}, {"tags": ["DOG", "Cat"]}, {"no_tags": ["cat"]}, {"tags": ["dog"], "no_tags": ["CAT"]},
        {"tags": ["dog"], "folder": root / "a"}, {"no_tags": ["dog"], "folder": root / "a" / "b"},
        {"folder": root / "nowhere"},
    ]


def far_query(lib: Any, files: dict[int, tuple[bytes, frozenset[str]]], folder: Path) -> tuple[np.ndarray, set[int]]:
    """A query vector the images inside ``folder`` answer worst (away from their mean), and their ids."""
    prefix = os.fsencode(folder) + b"/"
    wanted = {i for i, (path, _) in files.items() if path.startswith(prefix)}
    _, vectors = lib.catalog.embeddings(lib.spec.key, sorted(wanted))
    mean = vectors.mean(axis=0)
    return (-mean / np.linalg.norm(mean)).astype(np.float32), wanted


@pytest.fixture(scope="module")
def faiss_lib(tmp_path_factory, tiny_clip):
    """A FAISS library over the filter layout, tagged; ``(lib, root, files)``."""
    import glimpse

    root = Path(os.path.realpath(tmp_path_factory.mktemp("filter-photos")))
    photos = make_filter_photos(root, Path(os.path.realpath(tmp_path_factory.mktemp("outside"))))
    lib = glimpse.open_library(tmp_path_factory.mktemp("filter-lib"), model=str(tiny_clip))
    lib.index([root])
    files = put_test_tags(lib.catalog, photos)
    yield lib, root, files
    lib.close()


def test_every_filter_keeps_exactly_the_matching_images_best_first(faiss_lib):
    lib, root, files = faiss_lib
    query = lib.query_vector("a photo")
    for filters in filter_cases(root):
        want = expected_ids(lib, files, query, **filters)
        for k in (2, 50):
            assert [h.id for h in lib.search_vector(query, k, **filters)] == want[:k], (filters, k)
    # the prefix is a directory: "a/b" holds its own 4 and sub/'s 2 photos, none of "a/bc"
    paths = [h.path for h in lib.search("a photo", k=50, folder=root / "a" / "b")]
    assert len(paths) == 6 and all(p.startswith(f"{root}/a/b/") for p in paths)
    # undecodable bytes vs U+FFFD: each folder keeps only its own photo
    latin1 = lib.search("a photo", k=50, folder=root / os.fsdecode(b"x/caf\xe9"))
    assert [os.fsencode(h.path) for h in latin1] == [os.fsencode(root) + b"/x/caf\xe9/img_018.jpg"]
    # a tag no image carries is a mistake to report, not a silent "no results"
    with pytest.raises(UserInputError, match="no image carries the tag 'no such tag'"):
        lib.search_vector(query, 5, tags=["no such tag"])


def test_folder_through_a_symlink_or_home_matches_the_stored_paths(faiss_lib, tmp_path, monkeypatch):
    lib, root, _ = faiss_lib
    query = lib.query_vector("a photo")
    direct = [h.id for h in lib.search_vector(query, 50, folder=root / "a" / "b")]
    (tmp_path / "link").symlink_to(root / "a" / "b")
    assert [h.id for h in lib.search_vector(query, 50, folder=tmp_path / "link")] == direct
    monkeypatch.setenv("HOME", str(root))
    assert [h.id for h in lib.search_vector(query, 50, folder="~/a/b")] == direct


def test_filters_reach_matches_ranked_far_below_k(faiss_lib):
    lib, root, files = faiss_lib
    query, wanted = far_query(lib, files, root / "a" / "b" / "sub")
    unfiltered = [h.id for h in lib.search_vector(query, 10)]
    assert not wanted & set(unfiltered)  # a filter over the plain top 10 would find nothing
    assert {h.id for h in lib.search_vector(query, 2, folder=root / "a" / "b" / "sub")} == wanted
    rarest = lib.search_vector(query, len(files))[-1].id
    lib.catalog.put_tags([(rarest, None, [("rare", 1.0)])], source="rare")
    try:
        assert [h.id for h in lib.search_vector(query, 1, tags=["Rare"])] == [rarest]
        assert rarest not in {h.id for h in lib.search_vector(query, len(files), no_tags=["rare"])}
    finally:
        lib.catalog.put_tags([(rarest, None, [])], source="rare")


def test_similar_takes_the_same_filters(faiss_lib):
    lib, root, files = faiss_lib
    other = next(i for i, (path, _) in files.items() if b"/other/" in path)
    vector = lib.image_vector(other)
    for filters in ({"folder": root / "a" / "bc", "no_tags": ["cat"]}, {"tags": ["dog"], "folder": root / "a"}):
        assert [h.id for h in lib.similar(other, 3, **filters)] == expected_ids(lib, files, vector, **filters)[:3]
    assert lib.similar(other, 1, folder=root / "other")[0].id == other  # it still finds itself first


def test_cli_folder_option_on_search_and_similar(faiss_lib, tiny_clip):
    from glimpse.cli import app

    lib, root, files = faiss_lib
    base = ["--library", str(lib.directory), "--model", str(tiny_clip)]
    runner = CliRunner()
    result = runner.invoke(app, [*base, "search", "a photo", "-k", "50", "--folder", str(root / "a" / "b"),
                                 "--tag", "dog", "--json"])
    assert result.exit_code == 0, result.output
    want = expected_ids(lib, files, lib.query_vector("a photo"), folder=root / "a" / "b", tags=["dog"])
    assert [h["id"] for h in json.loads(result.stdout)] == want and len(want) == 3
    photo = root / "other" / "img_010.jpg"
    result = runner.invoke(app, [*base, "similar", str(photo), "-k", "2", "--folder", str(root / "a" / "bc"),
                                 "--no-tag", "cat", "--json"])
    assert result.exit_code == 0, result.output
    want = expected_ids(lib, files, lib.image_vector(photo), folder=root / "a" / "bc", no_tags=["cat"])[:2]
    assert [h["id"] for h in json.loads(result.stdout)] == want
    assert "--folder" in runner.invoke(app, ["search", "--help"]).stdout
    not_a_folder = runner.invoke(app, [*base, "search", "a photo", "--folder", str(photo)])
    assert not_a_folder.exit_code == 2 and "is a file" in not_a_folder.output
