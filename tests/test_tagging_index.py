"""CLIP tagger, vocabulary, calibration, tags in the catalog (migration, re-tag only changes, filters, facets)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from conftest import DROP_V5, make_photo, make_photos
from glimpse.catalog import SCHEMA_VERSION, Catalog
from glimpse.errors import UserInputError
from glimpse.tagging.calibrate import best_f1_threshold, calibrate
from glimpse.tagging.vocab import CATEGORIES, load_vocabulary, parse_vocabulary
from tagging_helpers import run


def test_builtin_vocabulary_is_bilingual_and_categorised(monkeypatch):
    monkeypatch.delenv("GLIMPSE_TAG_VOCABULARY", raising=False)
    vocab = load_vocabulary()
    assert len(vocab) >= 2000
    assert len({n.lower() for n in vocab.names}) == len(vocab)
    assert all(zh and not zh.isascii() for zh in vocab.chinese)
    chinese = [name for zh in vocab.chinese for name in zh.split("/")]
    assert len(set(chinese)) == len(chinese)  # no Chinese name or alias names two tags
    assert set(vocab.categories) == CATEGORIES  # every category is used
    assert min(vocab.categories.count(c) for c in CATEGORIES) >= 20
    assert vocab.index_of("狗") == vocab.index_of("dog") == vocab.index_of("犬")


def test_vocabulary_errors_name_the_line():
    with pytest.raises(UserInputError, match="line 2"):
        parse_vocabulary("dog\t狗\tanimal\ncat\t猫\n")
    with pytest.raises(UserInputError, match="unknown category"):
        parse_vocabulary("dog\t狗\tbeast\n")
    with pytest.raises(UserInputError, match="repeats line 1"):
        parse_vocabulary("dog\t狗\tanimal\nDog\t犬\tanimal\n")
    with pytest.raises(UserInputError, match=r"line 2: the Chinese name '犬'.*line 1"):
        parse_vocabulary("dog\t狗/犬\tanimal\nhound\t犬\tanimal\n")


def test_best_f1_threshold_separates_and_calibrate_keeps_unlabelled_defaults():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])
    positive = np.array([True, True, True, False, False, False])
    cut, f1 = best_f1_threshold(scores, positive)
    assert 0.4 < cut < 0.7 and f1 == 1.0
    labels = np.stack([positive, np.zeros(6, dtype=bool)], axis=1)
    out = calibrate(np.stack([scores, scores], axis=1), labels, np.array([0.5, 0.42]))
    assert 0.4 < out[0] < 0.7 and out[1] == np.float32(0.42)


def test_migration_from_schema_1_keeps_rows(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    Catalog(path).add_root("/photos")
    db = sqlite3.connect(path)
    db.executescript(DROP_V5 + "DROP TABLE ocr_fts; DROP TABLE ocr_lines; DROP TABLE ocr_done; "
                     "DROP TABLE tags; DROP TABLE tagged; ALTER TABLE files DROP COLUMN tried_with; "
                     "UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    db.close()
    catalog = Catalog(path)
    assert catalog.schema_version == SCHEMA_VERSION == 6
    assert catalog.roots() == ["/photos"]
    assert catalog.tag_counts() == []
    catalog.close()


@pytest.fixture()
def tagged_library(tmp_path, tiny_clip, small_vocab):
    photos = tmp_path / "photos"
    make_photos(photos, 6)
    lib = tmp_path / "lib"
    code, out = run("--library", str(lib), "--model", str(tiny_clip), "index", str(photos), "--tags", "--json")
    assert code == 0, out
    return lib, photos, json.loads(out)


def test_index_tags_only_new_and_changed_images(tagged_library, tiny_clip):
    lib, photos, report = tagged_library
    assert report["tags"]["tagged"] == 6 and report["tags"]["tags"] > 0
    _, out = run("--library", str(lib), "--model", str(tiny_clip), "index", str(photos), "--tags", "--json")
    assert json.loads(out)["tags"]["tagged"] == 0
    make_photo(photos / "img_001.jpg", seed=99)  # content changed
    make_photo(photos / "new.jpg", seed=100)
    _code, out = run("--library", str(lib), "--model", str(tiny_clip), "index", str(photos), "--tags", "--json")
    assert json.loads(out)["tags"]["tagged"] == 2


def test_search_filters_by_tags_and_facets_count_them(tagged_library, tiny_clip):
    lib, _, _ = tagged_library
    base = ("--library", str(lib), "--model", str(tiny_clip))
    code, out = run(*base, "tags", "--top", "5", "--json")
    facets = json.loads(out)
    assert code == 0 and facets and facets == sorted(facets, key=lambda f: -f["count"])
    code, out = run(*base, "search", "a photo", "-k", "10", "--json")
    hits = json.loads(out)
    assert len(hits) == 6 and all("tags" in h for h in hits)
    with_tag = {h["id"] for h in hits if any(t["tag"] == facets[0]["tag"] for t in h["tags"])}
    assert len(with_tag) == facets[0]["count"]
    code, out = run(*base, "search", "a photo", "--tag", facets[0]["tag"], "--json")
    assert {h["id"] for h in json.loads(out)} == with_tag
    code, out = run(*base, "search", "a photo", "--no-tag", facets[0]["tag"], "--json")
    assert {h["id"] for h in json.loads(out)} == {h["id"] for h in hits} - with_tag
    if len(facets) > 1:
        both = {h["id"] for h in hits if {t["tag"] for t in h["tags"]} >= {facets[0]["tag"], facets[1]["tag"]}}
        code, out = run(*base, "search", "a photo", "--tag", facets[0]["tag"], "--tag", facets[1]["tag"], "--json")
        assert {h["id"] for h in json.loads(out)} == both


def test_tag_command_clip_bilingual_and_errors(tmp_path, tiny_clip, small_vocab):
    photo = make_photo(tmp_path / "p.jpg", seed=3)
    code, out = run("--model", str(tiny_clip), "tag", str(photo), "--lang", "en,zh", "--threshold", "0",
                    "--only", "dog,cat", "--json")
    assert code == 0, out
    result = json.loads(out)[0]
    assert {t["tag"] for t in result["tags"]} == {"dog", "cat"}
    zh = {t["tag"]: t["zh"] for t in result["tags"]}
    assert zh["dog"] == "狗" and result["source"].startswith("clip:")
    dog = next(t for t in result["tags"] if t["tag"] == "dog")
    assert dog["zh_aliases"] == ["犬"]
    code, _ = run("--model", str(tiny_clip), "tag", str(photo), "--threshold", "2")
    assert code == 1
    code, _ = run("tag", str(photo), "--tagger", "ram")
    assert code == 1
    code, _ = run("tag", str(photo), "--tagger", "ram", "--ram-checkpoint", str(tmp_path / "missing.pth"))
    assert code == 1
