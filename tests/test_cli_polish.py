"""Polish a daily user notices ([K]): `--version`, and indexing something with no images in it."""

from __future__ import annotations

import logging

from typer.testing import CliRunner

import glimpse
from conftest import make_photos
from glimpse.cli import app


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"glimpse {glimpse.__version__}"


def test_an_empty_folder_or_a_non_image_is_not_registered_as_a_root(open_lib, tmp_path, caplog):
    empty, text, pics = tmp_path / "empty", tmp_path / "notes.txt", tmp_path / "pics"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("no pictures here")
    text.write_text("hello")
    make_photos(pics, 2)
    lib = open_lib()
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        lib.index([empty, text, pics])
    notes = [r.getMessage() for r in caplog.records]
    assert any(f"no images found under {empty}" in n for n in notes)
    assert any(f"{text} is not an image" in n for n in notes)
    assert lib.catalog.roots() == [str(pics)]
    # a root that once held images stays a root when they are gone
    for photo in pics.iterdir():
        photo.unlink()
    lib.index([pics])
    assert lib.catalog.roots() == [str(pics)]
