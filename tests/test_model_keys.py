"""Model keys hash whole weight files (cached per file version), and libraries keyed the old way migrate."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import make_photos
from glimpse import checkpoints, digests, registry
from glimpse.catalog import Catalog, FileUpdate
from glimpse.encoders.immich import immich_spec
from glimpse.spec import slug
from glimpse.tagging.vocab import VOCABULARY_ENV

MIB = 1 << 20


def write_tiny_vocabulary(path: Path, rows: int) -> Path:
    """The first ``rows`` rows of the built-in tag vocabulary (its format), for taggers that embed in seconds."""
    from importlib import resources

    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    path.write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own digest cache (never the user's)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "glimpse" / digests.CACHE_FILENAME


def _old_fingerprint(directory: Path) -> str:
    """The fingerprint as glimpse computed it before this change, verbatim: configs + first/last MiB."""
    digest = hashlib.sha256()
    for name in ("config.json", "preprocessor_config.json"):
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in [directory / "model.safetensors"]:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(MIB)
            handle.seek(max(size - MIB, 0))
            tail = handle.read(MIB)
        digest.update(f"{path.name}\0{size}\0".encode() + head + tail)
    return digest.hexdigest()


def _big_checkpoint(directory: Path, tiny_clip: Path, middle_value: float = 0.0) -> Path:
    """tiny_clip's configs with a 6 MiB safetensors whose only difference can be one value in its middle."""
    from safetensors.numpy import save_file

    directory.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_clip / name).exists():
            shutil.copy(tiny_clip / name, directory / name)
    filler = np.zeros(6 * MIB // 4, dtype=np.float32)
    filler[len(filler) // 2] = middle_value
    tensors = {"logit_scale": np.array(4.6052, dtype=np.float32), "filler": filler}
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def test_checkpoints_differing_only_in_middle_weights_get_different_keys(tmp_path, tiny_clip):
    first = _big_checkpoint(tmp_path / "a" / "ckpt", tiny_clip)
    second = _big_checkpoint(tmp_path / "b" / "ckpt", tiny_clip, middle_value=1.0)
    # the old first/last-MiB fingerprint cannot tell them apart...
    assert _old_fingerprint(first) == _old_fingerprint(second)
    # ...the key now can: their vectors never share a key
    assert registry.spec_from_checkpoint(first).key != registry.spec_from_checkpoint(second).key
    # and the same bytes keep one key wherever they are
    third = _big_checkpoint(tmp_path / "c" / "ckpt", tiny_clip)
    assert registry.spec_from_checkpoint(third).key == registry.spec_from_checkpoint(first).key


def _immich_dir(directory: Path, middle: bytes = b"\0") -> Path:
    (directory / "visual").mkdir(parents=True)
    (directory / "textual").mkdir()
    (directory / "config.json").write_text(json.dumps({"embed_dim": 16, "vision_cfg": {"image_size": 32},
                                                        "text_cfg": {"context_length": 77}}))
    body = bytearray(5 * MIB)
    body[len(body) // 2] = middle[0]
    (directory / "visual" / "model.onnx").write_bytes(bytes(body))
    (directory / "textual" / "model.onnx").write_bytes(b"text tower")
    (directory / "textual" / "tokenizer.json").write_text("{}")
    return directory


def test_immich_models_differing_only_in_middle_bytes_get_different_keys(tmp_path):
    from glimpse.encoders.immich import legacy_fingerprint

    first = _immich_dir(tmp_path / "a" / "ViT-B-32__openai")
    second = _immich_dir(tmp_path / "b" / "ViT-B-32__openai", middle=b"\1")
    assert legacy_fingerprint(first) == legacy_fingerprint(second)  # what keyed them before
    assert immich_spec(first).key != immich_spec(second).key
    # external weight data beside a tower counts too
    key = immich_spec(first).key
    (first / "visual" / "model.onnx.data").write_bytes(b"weights")
    assert immich_spec(first).key != key


def test_weight_digest_is_computed_once_per_file_version(tmp_path, monkeypatch, private_cache):
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(3 * MIB))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digests.file_sha256(path) == expected
    assert private_cache.is_file()

    real_hash = digests._hash_file

    def refuse(p: Path) -> str:
        raise AssertionError(f"{p} was hashed again")

    monkeypatch.setattr(digests, "_hash_file", refuse)
    assert digests.file_sha256(path) == expected  # from the cache
    assert digests.file_sha256(tmp_path / "." / "weights.bin") == expected  # keyed by the real path

    # a rewritten file (new mtime) is hashed again
    path.write_bytes(b"new content")
    os.utime(path, ns=(1, 1))
    monkeypatch.setattr(digests, "_hash_file", real_hash)
    assert digests.file_sha256(path) == hashlib.sha256(b"new content").hexdigest()


@pytest.mark.parametrize("garbage", [b"\x00\xffnot json", b"[1, 2]", b'{"format": 1, "entries": {"x": 5}}',
                                     b'{"format": 1, "entries": []}'])
def test_a_corrupt_digest_cache_only_costs_a_rehash(tmp_path, private_cache, garbage):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    private_cache.parent.mkdir(parents=True)
    private_cache.write_bytes(garbage)
    assert digests.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    entries = json.loads(private_cache.read_text())["entries"]
    assert entries[str(path.resolve())][2] == hashlib.sha256(b"abc").hexdigest()
    assert not [p for p in private_cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_an_unwritable_cache_still_gives_the_digest(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    assert digests.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()


def test_a_hub_snapshot_link_gives_its_blob_digest_without_hashing(tmp_path, monkeypatch):
    content = os.urandom(1000)
    sha = hashlib.sha256(content).hexdigest()
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / sha).write_bytes(content)
    snapshot = repo / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("..") / ".." / "blobs" / sha)

    def refuse(p: Path) -> str:
        raise AssertionError("a hub blob was hashed")

    monkeypatch.setattr(digests, "_hash_file", refuse)
    assert digests.file_sha256(snapshot / "model.safetensors") == sha


def test_the_model_directory_is_never_written(tmp_path, tiny_clip, private_cache):
    model = tmp_path / "model"
    shutil.copytree(tiny_clip, model)
    before = sorted(p.name for p in model.rglob("*"))
    registry.spec_from_checkpoint(model)
    assert sorted(p.name for p in model.rglob("*")) == before
    assert private_cache.is_file()  # the digest went to the user cache instead


def test_legacy_key_reproduces_the_old_key(tiny_clip):
    spec = registry.spec_from_checkpoint(tiny_clip)
    assert checkpoints.legacy_key(spec) == f"{slug(spec.name)}-{_old_fingerprint(Path(spec.source))[:10]}"
    assert checkpoints.legacy_key(spec) != spec.key


# -- migration of libraries keyed the old way --------------------------------------------------------------
def _index_the_old_way(monkeypatch, open_lib, photos: Path, tiny_clip: Path):
    """A library as an older glimpse left it: vectors, index policy, CLIP tags and text cache under the old key."""
    from glimpse.tagging.library_tags import tag_library
    from glimpse.vectors.select import update_policy

    write_tiny_vocabulary(photos.parent / "vocab.tsv", rows=4)
    monkeypatch.setenv(VOCABULARY_ENV, str(photos.parent / "vocab.tsv"))
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "fingerprint", checkpoints.legacy_fingerprint)
        lib = open_lib()
        lib.index([photos])
        update_policy(lib.catalog, lib.spec.key, recall_target=0.93)
        tag_library(lib, threshold=0.0)  # every tag passes: each file gets some
        old_key = lib.spec.key
        lib.close()
    assert old_key == checkpoints.legacy_key(registry.spec_from_checkpoint(tiny_clip))
    return old_key


def _rows(library: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(library / "catalog.sqlite3")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_library_keyed_the_old_way_keeps_its_vectors(tmp_path, monkeypatch, open_lib, tiny_clip, caplog):
    from glimpse.tagging.clip_tagger import clip_source
    from glimpse.vectors.select import load_policy

    library = tmp_path / "library"
    photos = tmp_path / "pics"
    make_photos(photos, 5)
    old_key = _index_the_old_way(monkeypatch, open_lib, photos, tiny_clip)
    old_vectors = _rows(library, f"SELECT file_id, vector FROM embeddings WHERE model_key = '{old_key}' ORDER BY 1")
    old_tags = _rows(library, f"SELECT file_id, tag, score FROM tags WHERE source = 'clip:{old_key}' ORDER BY 1, 2")
    assert len(old_vectors) == 5 and old_tags
    assert (library / "cache" / "text" / f"{old_key}.npz").is_file()

    lib = open_lib()
    key = lib.spec.key
    assert key != old_key
    assert "moved from key" in caplog.text
    # the catalog holds the same vectors and tags, under the new key only
    assert [(m["key"], m["embeddings"]) for m in lib.catalog.models()] == [(key, 5)]
    assert _rows(library, f"SELECT file_id, vector FROM embeddings WHERE model_key = '{key}' ORDER BY 1") == old_vectors
    assert _rows(library, f"SELECT file_id, tag, score FROM tags WHERE source = 'clip:{key}' ORDER BY 1, 2") == old_tags
    assert _rows(library, "SELECT COUNT(*) FROM changes WHERE model_key = '" + old_key + "'") == [(0,)]
    assert lib.catalog.files_to_tag(clip_source(key)) == []  # nothing to tag again
    assert load_policy(lib.catalog, key).recall_target == 0.93
    # the FAISS index and the text cache were renamed, not rebuilt from scratch or left behind
    names = sorted(p.name for p in (library / "index").iterdir() if p.suffix in (".faiss", ".json"))
    assert names == [f"{key}.faiss", f"{key}.json"]
    assert json.loads((library / "index" / f"{key}.json").read_text())["model_key"] == key
    assert (library / "cache" / "text" / f"{key}.npz").is_file()
    assert not (library / "cache" / "text" / f"{old_key}.npz").exists()
    # searches find everything, and indexing again encodes nothing
    assert len(lib.search("a photo", k=10)) == 5
    report = lib.index([photos])
    assert report.encoded == 0 and report.unchanged == 5


def test_rename_model_key_merges_into_an_existing_key(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    try:
        for key in ("old", "new"):
            catalog.register_model(key, "m", 2, {"key": key})
        updates = [FileUpdate(path=str(tmp_path / f"{i}.jpg"), size=1, mtime_ns=1, hash=f"h{i}", width=1, height=1,
                              format="JPEG", state="ok", vector=np.array([1.0, float(i)], np.float32))
                   for i in range(3)]
        ids = catalog.apply(updates, "old")
        catalog.apply([replace(updates[0], vector=np.array([9.0, 0.0], np.float32))], "new")  # this one wins
        catalog.put_tags([(ids[1], "h1", [("dog", 0.9)])], "clip:old")
        assert catalog.rename_model_key("old", "new", {"key": "new"}, tag_sources={"clip:old": "clip:new"})
        assert [(m["key"], m["embeddings"]) for m in catalog.models()] == [("new", 3)]
        assert catalog.tags_of([ids[1]]) == {ids[1]: [("dog", pytest.approx(0.9))]}
        assert {r.id for r in catalog.files_to_tag("clip:new")} == {ids[0], ids[2]}  # ids[1] stays tagged
        _, vectors = catalog.embeddings("new", [ids[0]])
        assert vectors[0].tolist() == [9.0, 0.0]
        assert not catalog.rename_model_key("old", "new", {"key": "new"})  # already done: nothing to do
    finally:
        catalog.close()


# -- RAM checkpoints: the same weakness in the tag source --------------------------------------------------
def test_ram_checkpoints_differing_only_in_the_middle_get_different_sources(tmp_path):
    from glimpse.tagging.ram import checkpoint_key, legacy_checkpoint_key

    paths = []
    for i in range(2):
        body = bytearray(5 * MIB)
        body[len(body) // 2] = i
        paths.append(tmp_path / str(i) / "ram_plus_swin_large_14m.pth")
        paths[-1].parent.mkdir()
        paths[-1].write_bytes(bytes(body))
    assert legacy_checkpoint_key(paths[0]) == legacy_checkpoint_key(paths[1])  # what named their tags before
    assert checkpoint_key(paths[0]) != checkpoint_key(paths[1])


def test_tags_stored_under_a_legacy_source_are_kept_not_redone(tmp_path, open_lib):
    from glimpse.tagging.base import Tagger, Vocabulary
    from glimpse.tagging.library_tags import tag_catalog

    make_photos(tmp_path / "pics", 3)
    lib = open_lib()
    lib.index([tmp_path / "pics"])

    class Fake(Tagger):
        vocab = Vocabulary(["dog", "cat"], np.full(2, 0.5, np.float32))
        preprocess = lib.spec.preprocess
        source, legacy_source = "ram_plus:new", "ram_plus:old"

        def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
            return np.tile(np.array([0.9, 0.1], np.float32), (len(pixels), 1))

    records = lib.catalog.files_to_tag("ram_plus:old")
    lib.catalog.put_tags([(rec.id, rec.hash, [("cat", 0.8)]) for rec in records], "ram_plus:old")
    report = tag_catalog(lib.catalog, Fake())
    assert report.tagged == 0 and report.unchanged == 3  # nothing was decoded or scored again
    assert lib.catalog.tags_of([rec.id for rec in records]) == {rec.id: [("cat", pytest.approx(0.8))]
                                                                for rec in records}
    assert lib.catalog.files_to_tag("ram_plus:old") == records  # the old name holds nothing any more


def test_an_fp32_export_migrates_like_its_source(tiny_clip, tmp_path):
    """An fp32 export shares its source's key, so a library keyed the old way finds its vectors through it too."""
    from glimpse.encoders.export import export_model

    directory = export_model(str(tiny_clip), tmp_path / "onnx").directory
    exported, source = registry.load_spec(str(directory)), registry.load_spec(str(tiny_clip))
    assert exported.key == source.key
    assert checkpoints.legacy_key(exported) == checkpoints.legacy_key(source) is not None


def test_a_library_that_cannot_be_written_keeps_the_old_key_for_now(tmp_path, monkeypatch, open_lib, tiny_clip):
    photos = tmp_path / "pics"
    make_photos(photos, 3)
    old_key = _index_the_old_way(monkeypatch, open_lib, photos, tiny_clip)

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Catalog, "rename_model_key", read_only)
    lib = open_lib()
    assert lib.spec.key == old_key  # the vectors are found under the key they have
    assert len(lib.search("a photo", k=5)) == 3
    index_files = sorted(p.name for p in (tmp_path / "library" / "index").iterdir() if p.suffix == ".faiss")
    assert index_files == [f"{old_key}.faiss"]  # the copy made for the rename was taken back
