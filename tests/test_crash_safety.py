"""kill -9 the indexer at random points, again and again; the library must stay exact.

Each round starts `glimpse index` in a subprocess and SIGKILLs it: most rounds right after the catalog
shows a random amount of new progress (so the kill lands mid-batch, mid-commit or mid-decode), some at a
random time (start-up, scanning), one after all files are in (while the vector index is being saved).
Then a final run completes, and every image must be in the catalog exactly once, with exactly one vector,
and the FAISS index must hold exactly the catalog's ids.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import count_rows, make_photos
from glimpse.catalog import Catalog
from glimpse.vectors.faiss import FaissIndex

N_IMAGES = 150
ROUNDS = 12


def _start(library: Path, model: Path, pics: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "glimpse", "--library", str(library), "--model", str(model),
           "index", str(pics), "--batch-size", "2", "--workers", "2", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_never_loses_or_duplicates(tmp_path, tiny_clip):
    pics = tmp_path / "pics"
    photos = make_photos(pics, N_IMAGES)
    library = tmp_path / "lib"
    catalog_path = library / "catalog.sqlite3"
    rng = random.Random(1234)
    kills = 0
    for round_no in range(ROUNDS):
        proc = _start(library, tiny_clip, pics)
        before = count_rows(catalog_path, "files")
        if round_no == ROUNDS - 1:
            mode, target = "after-all-files", N_IMAGES
        elif round_no % 4 == 3:
            mode, target = "timed", 0
        else:
            mode, target = "progress", min(N_IMAGES, before + rng.randint(1, 12))
        deadline = time.monotonic() + 120
        delay = rng.uniform(0.2, 4.0)
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() < deadline:
            if mode == "timed" and time.monotonic() - started >= delay:
                break
            if mode != "timed" and count_rows(catalog_path, "files") >= target:
                time.sleep(rng.uniform(0.0, 0.05))
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if proc.returncode not in (0, -signal.SIGKILL):
            pytest.fail(f"round {round_no}: indexer failed: {proc.stderr.read().decode()}")
        proc.stderr.close()
    assert kills >= 10, f"only {kills} kills landed; the indexer finished too early"

    final = _start(library, tiny_clip, pics)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()

    catalog = Catalog(catalog_path)
    try:
        assert catalog.integrity_check() == ["ok"]
        records = catalog.files_under(str(pics.resolve()))
        assert sorted(records) == sorted(str(p.resolve()) for p in photos)
        assert all(r.state == "ok" for r in records.values())
        ids = [r.id for r in records.values()]
        assert len(set(ids)) == N_IMAGES
        (model,) = catalog.models()
        emb_ids, vectors = catalog.embeddings(model["key"])
        assert sorted(emb_ids.tolist()) == sorted(ids) and len(emb_ids) == N_IMAGES
        index = FaissIndex.load(library / "index", model["key"], model["dim"])
        assert index is not None
        assert sorted(index.ids().tolist()) == sorted(ids)
        # and the index answers with the right vectors: every image finds itself first
        for row in range(0, N_IMAGES, 15):
            result = index.search(vectors[row], k=1)[0]
            assert result.ids[0] == emb_ids[row]
    finally:
        catalog.close()
    # temporary files of saves that were killed are cleaned up by the next indexing run
    assert [name for name in os.listdir(library / "index") if name.endswith(".tmp")] == []
