"""The one-writer lock of a library, on every OS.

``filelock`` (maintained, and already installed with huggingface_hub) takes the platform's own advisory lock:
``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on Windows. Either is released by the operating system
when the holder dies, so a ``kill -9`` of an indexer or a watcher never leaves the library locked. The lock file
itself stays (it is empty); only holding it means anything.

The lock implementation is a parameter (:func:`writer_lock`'s ``lock_class``): the product uses the platform's,
tests also run the same code with ``filelock``'s other implementations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from glimpse.errors import LibraryBusyError, ReadOnlyLibraryError

PLATFORM_LOCK: type[filelock.BaseFileLock] = filelock.FileLock
"""``UnixFileLock`` on POSIX systems, ``WindowsFileLock`` on Windows (filelock picks it on import)."""


@contextmanager
def writer_lock(path: str | os.PathLike[str], *, library: str | os.PathLike[str], wait: float = 0.0,
                lock_class: type[filelock.BaseFileLock] = PLATFORM_LOCK) -> Iterator[None]:
    """Hold the writer lock file ``path`` of ``library`` for the body.

    ``wait``: seconds to wait for another writer to finish (0: fail at once). Raises LibraryBusyError when
    another process (or another Library in this process) holds it, ReadOnlyLibraryError when the lock file
    cannot be written.
    """
    lock = lock_class(os.fspath(path), timeout=max(0.0, wait), thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        waited = f" (waited {wait:g} s)" if wait > 0 else ""
        raise LibraryBusyError(
            f"another glimpse process is writing the library {library}{waited} — an `index`, `tag` or `remove`, "
            "or a `glimpse watch` / `serve --watch` catching up; wait for it to finish (or give --wait SECONDS)"
        ) from exc
    except OSError as exc:
        raise ReadOnlyLibraryError(
            f"cannot write the lock file {Path(path)}: {(exc.strerror or str(exc)).lower()}; indexing, tagging "
            "and removing need write access to the library folder"
        ) from exc
    try:
        yield
    finally:
        lock.release()
