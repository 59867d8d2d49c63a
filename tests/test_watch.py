"""The watcher keeps a library current: new, changed, renamed and deleted files converge, a rename is a move,
files still being written are waited for, and a watcher killed with -9 loses nothing (the next one catches up).

Waits are bounded polls of the catalog (``converge``), never sleeps used as assertions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_photo, make_photos
from glimpse.errors import UserInputError
from glimpse.watch import WatchOptions, WatchRun, relevant, roots_of, wait_until_settled, watch_library

FAST = WatchOptions(debounce_ms=400, step_ms=100, settle_s=0.2, settle_timeout_s=10)


def converge(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the library did not converge in time")
        time.sleep(0.05)


def indexed_names(lib) -> set[str]:
    return {os.path.relpath(r.path, lib.directory.parent / "photos") for r in lib.indexed_files()}


class Watcher:
    """watch_library in a thread, with the runs it made."""

    def __init__(self, lib, roots):
        self.stop = threading.Event()
        self.runs: list[WatchRun] = []
        self.errors: list[BaseException] = []

        def target():
            try:
                watch_library(lib, roots, options=FAST, stop=self.stop, on_run=self.runs.append)
            except BaseException as exc:  # surfaced by the test, not lost in the thread
                self.errors.append(exc)

        self.thread = threading.Thread(target=target, daemon=True)

    def __enter__(self):
        self.thread.start()
        converge(lambda: self.runs or self.errors)  # the catch-up run is done: watching from here on
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.errors:
            raise self.errors[0]


def test_create_modify_rename_delete_converge(tmp_path, open_lib):
    photos = tmp_path / "photos"
    make_photos(photos, 2)
    lib = open_lib()
    with Watcher(lib, [photos]) as watcher:
        assert watcher.runs[0].catch_up and watcher.runs[0].report.added == 2
        make_photos(photos, 2, start=2)  # created
        converge(lambda: indexed_names(lib) == {"img_000.jpg", "img_001.jpg", "img_002.jpg", "img_003.jpg"})
        before = lib.indexed_files()
        moved_id = next(r.id for r in before if r.path.endswith("img_001.jpg"))
        (photos / "sub").mkdir()
        os.rename(photos / "img_001.jpg", photos / "sub" / "renamed.jpg")  # renamed (into a new folder)
        converge(lambda: "sub/renamed.jpg" in indexed_names(lib) and "img_001.jpg" not in indexed_names(lib))
        renamed = next(r for r in lib.indexed_files() if r.path.endswith("renamed.jpg"))
        assert renamed.id == moved_id  # the same row: a move, not a new file
        # The run's report arrives just after its commit: wait for it too.
        converge(lambda: any(run.report.moved == 1 and run.report.encoded == 0 for run in watcher.runs))
        old_hash = next(r.hash for r in before if r.path.endswith("img_000.jpg"))
        make_photo(photos / "img_000.jpg", seed=99)  # modified in place
        converge(lambda: next(r.hash for r in lib.indexed_files() if r.path.endswith("img_000.jpg")) != old_hash)
        (photos / "img_002.jpg").unlink()  # deleted
        converge(lambda: "img_002.jpg" not in indexed_names(lib))
    assert indexed_names(lib) == {"img_000.jpg", "sub/renamed.jpg", "img_003.jpg"}
    hits = lib.search_vector(lib.image_vector(str(photos / "img_000.jpg")), k=1)
    assert hits[0].path.endswith("img_000.jpg")  # the new content's vector is searchable


def test_a_burst_is_a_few_runs_not_one_per_file(tmp_path, open_lib):
    photos = tmp_path / "photos"
    photos.mkdir()
    lib = open_lib()
    staging = tmp_path / "staging"
    make_photos(staging, 40)
    with Watcher(lib, [photos]) as watcher:
        for path in sorted(staging.iterdir()):
            shutil.move(str(path), photos / path.name)
        converge(lambda: sum(r.report.added for r in watcher.runs if not r.catch_up) == 40)
        runs = [r for r in watcher.runs if not r.catch_up]
    assert 1 <= len(runs) <= 5
    assert sum(r.report.added for r in runs) == 40


def test_a_file_still_being_written_is_waited_for(tmp_path):
    path = tmp_path / "growing.jpg"
    path.write_bytes(b"x")
    stop_writing = threading.Event()

    def writer():
        for _ in range(6):
            if stop_writing.wait(0.1):
                return
            with open(path, "ab") as fh:
                fh.write(b"y" * 100)

    thread = threading.Thread(target=writer)
    started = time.monotonic()
    thread.start()
    wait_until_settled([str(path)], settle_s=0.3, timeout_s=20)
    thread.join()
    assert path.stat().st_size == 601  # returned only after the last write ...
    assert time.monotonic() - started >= 0.6  # ... and a settle interval after it


def test_relevant_paths_and_roots(tmp_path):
    root = str(tmp_path)
    assert relevant(os.path.join(root, "a.jpg"), [root])
    assert relevant(os.path.join(root, "IMG_1.CR3"), [root])
    assert not relevant(os.path.join(root, "notes.txt"), [root])
    assert not relevant("/elsewhere/a.jpg", [root])
    assert relevant(os.path.join(root, "gone-folder"), [root])  # may have been a folder: its files moved
    assert roots_of([os.path.join(root, "x", "a.jpg")], [root, "/other"]) == [root]


def test_bad_arguments(tmp_path, open_lib):
    with pytest.raises(UserInputError, match="not a folder"):
        watch_library(open_lib(), [tmp_path / "missing"], options=FAST)
    with pytest.raises(UserInputError, match="step"):
        WatchOptions(debounce_ms=100, step_ms=500)


def test_a_killed_watcher_loses_nothing(tmp_path, tiny_clip):
    photos = tmp_path / "photos"
    make_photos(photos, 2)
    library = tmp_path / "library"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "glimpse", "--library", str(library), "--model", str(tiny_clip), "watch",
               str(photos), "--debounce-ms", "400", "--settle", "0.2"]
    import glimpse

    def names() -> set[str]:
        with glimpse.open_library(library) as lib:
            return {Path(r.path).name for r in lib.indexed_files()}

    watcher = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        converge(lambda: (library / "catalog.sqlite3").exists() and names() == {"img_000.jpg", "img_001.jpg"})
        make_photos(photos, 1, start=2)
        converge(lambda: "img_002.jpg" in names())
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
    make_photos(photos, 1, start=3)  # arrives while nothing watches
    (photos / "img_000.jpg").unlink()
    again = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        converge(lambda: names() == {"img_001.jpg", "img_002.jpg", "img_003.jpg"})
    finally:
        again.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        _, stderr = again.communicate(timeout=60)
    # A clean stop on Ctrl-C: exit code 130, or the SIGINT itself where it lands while threads shut down.
    assert again.returncode in (0, 130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr
    assert names() == {"img_001.jpg", "img_002.jpg", "img_003.jpg"}  # the library is intact after the stop


def test_serve_watch_keeps_the_server_current(tmp_path, tiny_clip):
    pytest.importorskip("fastapi")
    import glimpse
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings
    from server_harness import get_json, serve

    root = tmp_path / "root"
    make_photos(root, 2)
    with glimpse.open_library(tmp_path / "lib", model=str(tiny_clip)) as lib:
        lib.index([root])
    served = serve(create_app(LibrarySettings(tmp_path / "lib", str(tiny_clip)), watch=True))
    try:
        converge(lambda: (get_json(served, "/api/status")["watch"] or {}).get("runs", 0) >= 1)  # caught up
        new = make_photo(root / "new.jpg", seed=50)
        converge(lambda: get_json(served, "/api/status")["images"] == 3)
        hits = get_json(served, "/api/search?q=photo&k=3")["results"]
        assert str(new) in {h["path"] for h in hits}
        status = get_json(served, "/api/status")["watch"]
        assert status["watching"] and not status["errors"]
    finally:
        served.stop()
