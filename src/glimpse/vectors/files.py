"""Files next to a library's vector indexes: names safe for any model key, and crash-safe writes.

A write goes to a temporary name unique to the writing process and thread, is fsync'ed, then renamed over
the target, so a crash leaves the old file or the new one, never a torn one, and two writers never share a
temporary.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path


def safe_name(model_key: str) -> str:
    """``model_key`` as a file name stem: runs of anything but letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)


def temporary_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and thread."""
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def fsync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (not atomic on its own: see ``atomic_write``)."""
    with open(path, "wb") as fh:
        fh.write(data)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(temporary path)``, fsync and rename; on failure no temporary is left."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
