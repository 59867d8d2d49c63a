"""The indexer keeps the encoder busy: a batch is written to the catalog while the next one is being encoded, and a
failing encoder still fails the run with its own error, writing nothing it did not encode; a batch reaches the encoder
in the slab rows its workers wrote, holes closed, each photo keeping its own vector."""

from __future__ import annotations

import os
import threading

import pytest

from conftest import make_photos
from glimpse.catalog import Catalog
from glimpse.errors import ModelError


def test_a_batch_is_written_while_the_next_is_encoded(open_lib, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    make_photos(pics, 6)
    lib = open_lib()
    second_encode = threading.Event()
    seen: dict[str, object] = {"encode_threads": set(), "overlapped": None}
    encode, apply = lib.encoder.encode_pixels, Catalog.apply
    calls = {"encode": 0, "apply": 0}

    def encoding(pixels):
        calls["encode"] += 1
        seen["encode_threads"].add(threading.current_thread() is threading.main_thread())  # type: ignore[union-attr]
        if calls["encode"] == 2:
            second_encode.set()
        return encode(pixels)

    def writing(self, updates, model_key):
        calls["apply"] += 1
        if calls["apply"] == 1:
            # The first batch's write waits for the second batch's encode to start: it can only start if the
            # encoder does not wait for the write (a serial indexer never gets there: the wait times out).
            seen["overlapped"] = second_encode.wait(timeout=20)
        return apply(self, updates, model_key)

    monkeypatch.setattr(lib.encoder, "encode_pixels", encoding)
    monkeypatch.setattr(Catalog, "apply", writing)
    report = lib.index([pics], batch_size=2)
    assert report.encoded == 6 and calls == {"encode": 3, "apply": 3}
    assert seen == {"encode_threads": {False}, "overlapped": True}
    assert lib.catalog.count_embeddings(lib.spec.key) == 6


def test_an_encoder_failure_fails_the_run_and_keeps_what_was_written(open_lib, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    make_photos(pics, 6)
    lib = open_lib()
    encode = lib.encoder.encode_pixels
    calls = {"n": 0}

    def failing(pixels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ModelError("the image tower failed")
        return encode(pixels)

    monkeypatch.setattr(lib.encoder, "encode_pixels", failing)
    with pytest.raises(ModelError, match="image tower failed"):
        lib.index([pics], batch_size=2)
    assert lib.catalog.count_embeddings(lib.spec.key) == 2  # the first batch; nothing of the failed one
    monkeypatch.setattr(lib.encoder, "encode_pixels", encode)
    again = lib.index([pics], batch_size=2)
    assert again.encoded == 4 and lib.catalog.count_embeddings(lib.spec.key) == 6


def test_two_batches_overlap_where_the_encoder_runs_pieces_and_give_the_same_vectors(open_lib, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    make_photos(pics, 7)
    serial = open_lib(directory=tmp_path / "serial")
    assert serial.encoder.overlapping_batches == 1  # a batch of 2 on this tiny model is not cut into pieces
    serial.index([pics], batch_size=2)
    want = _stored_vectors(serial)

    lib = open_lib(directory=tmp_path / "overlapped")
    monkeypatch.setattr(type(lib.encoder), "overlapping_batches", property(lambda self: 2))
    second_started = threading.Event()
    encode = lib.encoder.encode_pixels
    calls = {"n": 0}
    lock = threading.Lock()
    seen: dict[str, bool] = {}

    def encoding(pixels):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == 2:
            second_started.set()
        if n == 1:  # the second call starts while the first still runs: they overlap
            seen["overlapped"] = second_started.wait(timeout=20)
        return encode(pixels)

    monkeypatch.setattr(lib.encoder, "encode_pixels", encoding)
    report = lib.index([pics], batch_size=2)
    assert report.encoded == 7 and calls["n"] == 4 and seen == {"overlapped": True}
    got = _stored_vectors(lib)
    assert got.keys() == want.keys()
    for path, vector in got.items():
        assert float(vector @ want[path]) > 0.9999, path  # each photo got its own vector, in its own row


def _stored_vectors(lib) -> dict:
    vectors = lib.vectors_of(lib.indexed_files())
    assert vectors.encoded == 0 and not vectors.errors  # the stored rows, not fresh encodes
    return dict(zip(vectors.paths, vectors.vectors, strict=True))


def test_the_servers_turn_taking_encoder_overlaps_as_its_inner_encoder_does(open_lib, monkeypatch):
    from glimpse.server.textturns import TurnTakingEncoder

    inner = open_lib().encoder
    assert TurnTakingEncoder(inner).overlapping_batches == inner.overlapping_batches == 1
    monkeypatch.setattr(type(inner), "overlapping_batches", property(lambda self: 2))
    assert TurnTakingEncoder(inner).overlapping_batches == 2


# -- pixels reach the encoder where the workers wrote them -----------------------------------------------------
def _spy_on_pixels(lib, monkeypatch) -> tuple[list, list]:
    """Record where each picture was preprocessed (the array's address, a copy of what was written) and, for each
    encoder call, the same for each row it was given (taken during the call: slab rows are written again later)."""
    import numpy as np

    from glimpse import pipeline

    written: list = []
    encoded: list = []
    preprocess, encode = pipeline.preprocess_image, lib.encoder.encode_pixels

    def where(array) -> tuple:
        return array.__array_interface__["data"][0], np.array(array)

    def preprocessing(image, pre, **kw):
        out = preprocess(image, pre, **kw)
        written.append(where(out))
        return out

    def encoding(pixels):
        encoded.append([where(row) for row in pixels])
        return encode(pixels)

    monkeypatch.setattr(pipeline, "preprocess_image", preprocessing)
    monkeypatch.setattr(lib.encoder, "encode_pixels", encoding)
    return written, encoded


def _in_place(row: tuple, written: list) -> bool:
    """Whether an encoded row is a picture at the address its worker wrote it to (not a copy elsewhere)."""
    import numpy as np

    return any(address == row[0] and np.array_equal(pixels, row[1]) for address, pixels in written)


def test_a_batch_is_encoded_in_the_rows_the_workers_wrote_and_slabs_are_reused(open_lib, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    make_photos(pics, 20)
    reference = open_lib(directory=tmp_path / "one-by-one")
    reference.index([pics], batch_size=1)
    lib = open_lib()
    written, encoded = _spy_on_pixels(lib, monkeypatch)
    report = lib.index([pics], batch_size=2)
    assert report.encoded == 20 and len(encoded) == 10 and len(written) == 20
    # No copy: every row the encoder read is a picture where its worker wrote it.
    assert all(_in_place(row, written) for batch in encoded for row in batch)
    addresses = {row[0] for batch in encoded for row in batch}
    assert len(addresses) < 20  # slab rows are written again once their batch is back
    want, got = _stored_vectors(reference), _stored_vectors(lib)
    assert got.keys() == want.keys()
    for path, vector in got.items():
        assert float(vector @ want[path]) > 0.9999, path


def test_files_without_pixels_leave_holes_that_are_closed_and_every_photo_keeps_its_own_vector(
        open_lib, tmp_path, monkeypatch):
    import shutil

    pics = tmp_path / "pics"
    photos = make_photos(pics, 6)
    good = tmp_path / "good"
    good.mkdir()
    for photo in photos:
        shutil.copy(photo, good / photo.name)
    # Sorted between the photos: a broken JPEG after the second photo, a text file named .jpg after the fourth.
    (pics / "img_001b.jpg").write_bytes(photos[0].read_bytes()[:300])
    (pics / "img_003b.jpg").write_text("not a picture at all\n")
    reference = open_lib(directory=tmp_path / "one-by-one")
    reference.index([good], batch_size=1)
    lib = open_lib()
    written, encoded = _spy_on_pixels(lib, monkeypatch)
    report = lib.index([pics], batch_size=4)
    assert report.encoded == 6 and report.failed == 2
    # Slabs of 4 rows: 000 001 hole 002 | 003 hole 004 005: two batches of 3, each hole closed inside its slab.
    assert [len(batch) for batch in encoded] == [3, 3]
    first_rows = [batch[0] for batch in encoded]  # where a batch starts, its first photo was written
    assert all(_in_place(row, written) for row in first_rows)
    moved = [row for batch in encoded for row in batch if not _in_place(row, written)]
    assert len(moved) == 3  # 002, 004 and 005, each moved down a row
    want = {os.path.basename(p): v for p, v in _stored_vectors(reference).items()}
    got = {os.path.basename(p): v for p, v in _stored_vectors(lib).items()}
    assert got.keys() == want.keys()
    for name, vector in got.items():
        assert float(vector @ want[name]) > 0.9999, name  # a moved row carries its own photo's pixels
