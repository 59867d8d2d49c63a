"""The one-writer lock on every OS: busy across processes, released by kill -9, waiting, read-only folders.

The product takes filelock's platform lock (fcntl on POSIX, msvcrt on Windows); the same seam runs here with
filelock's soft (lock-file) implementation too, the one filelock falls back to where neither exists, so the
code around the lock is exercised with more than the Linux branch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import filelock
import pytest

from glimpse.errors import LibraryBusyError
from glimpse.locking import PLATFORM_LOCK, writer_lock

LOCK_CLASSES = [PLATFORM_LOCK, filelock.SoftFileLock]


@pytest.mark.parametrize("lock_class", LOCK_CLASSES, ids=lambda c: c.__name__)
def test_a_second_writer_is_refused_then_admitted(tmp_path, lock_class):
    path = tmp_path / "indexing.lock"
    with writer_lock(path, library=tmp_path, lock_class=lock_class), \
            pytest.raises(LibraryBusyError, match="another glimpse process is writing"), \
            writer_lock(path, library=tmp_path, lock_class=lock_class):
        pass
    with writer_lock(path, library=tmp_path, lock_class=lock_class):
        pass  # free again once released


@pytest.mark.parametrize("lock_class", LOCK_CLASSES, ids=lambda c: c.__name__)
def test_wait_takes_the_lock_when_the_other_writer_finishes(tmp_path, lock_class):
    path = tmp_path / "indexing.lock"
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with writer_lock(path, library=tmp_path, lock_class=lock_class):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert holding.wait(30)
    threading.Timer(0.2, release.set).start()
    with writer_lock(path, library=tmp_path, wait=30, lock_class=lock_class):
        assert release.is_set()  # we got it only after the other one let go
    thread.join()


def test_the_os_releases_the_lock_of_a_killed_process(tmp_path):
    path = tmp_path / "indexing.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from glimpse.locking import writer_lock
        with writer_lock({str(path)!r}, library={str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LibraryBusyError), writer_lock(path, library=tmp_path):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait()
    with writer_lock(path, library=tmp_path):
        pass
