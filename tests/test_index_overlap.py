"""The indexer keeps the encoder busy: a batch is written to the catalog while the next one is being encoded, and a
failing encoder still fails the run with its own error, writing nothing it did not encode."""

from __future__ import annotations

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
