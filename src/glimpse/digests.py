"""Content digests (sha256) of big files such as model weights, computed once per file version.

A model key must change whenever any weight changes, so it is built from the sha256 of every weight file's
full content. Hashing a 600 MB checkpoint takes a second or two, so digests are remembered in a small JSON
file under the user cache directory (``$XDG_CACHE_HOME/glimpse/``, else ``~/.cache/glimpse/``), keyed by
the file's real path, size and ``mtime_ns``: a file rewritten in place gets a new ``mtime_ns`` and is
hashed again. The cache lives outside the model directory, so a read-only model directory works; an
unreadable, corrupt or unwritable cache only costs a re-hash, never an error.

A file of a Hugging Face cache snapshot is a symlink to ``blobs/<sha256 of its content>`` (for files stored
with Git LFS, which weights are): that name is the digest, so a downloaded model costs no hashing at all.

Only the standard library is imported: this runs while resolving every ``--model``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

CACHE_FILENAME = "file-digests.json"
CACHE_FORMAT = 1
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_BLOCK = 1 << 20


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/glimpse`` when XDG_CACHE_HOME is set (and absolute), else ``~/.cache/glimpse``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "glimpse"


def _hub_blob_digest(path: Path) -> str | None:
    """The sha256 a Hugging Face cache names the blob after, when ``path`` is a snapshot link to one."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if target.parent.name == "blobs" and _SHA256_HEX.fullmatch(target.name):
        return target.name
    return None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries ``{real path: [size, mtime_ns, sha256]}``; empty when missing or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else None
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Write the cache atomically; any failure leaves the old cache as it was (the digest is simply computed
    again next time)."""
    live = {name: entry for name, entry in entries.items() if os.path.exists(name)}  # forget deleted files
    write_text_atomically(path, json.dumps({"format": CACHE_FORMAT, "entries": live}))


def write_text_atomically(path: str | os.PathLike[str], text: str) -> bool:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it and a rename, creating the folder:
    readers see the old file or the new one, never a part. False (and nothing written) when it fails: callers
    are caches, for which a failed write only costs recomputing."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError:
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex of the full content of the file at ``path`` (following symlinks).

    Free for a Hugging Face snapshot link; otherwise looked up in the digest cache by (real path, size,
    ``mtime_ns``) and computed (then cached) on a miss. Raises ``OSError`` when the file cannot be read.
    """
    path = Path(path)
    from_hub = _hub_blob_digest(path)
    if from_hub is not None:
        return from_hub
    real = os.path.realpath(path)
    info = os.stat(real)
    stamp = [info.st_size, info.st_mtime_ns]
    cache = cache_dir() / CACHE_FILENAME
    entries = _read_cache(cache)
    entry = entries.get(real)
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == stamp and isinstance(entry[2], str) \
            and _SHA256_HEX.fullmatch(entry[2]):
        return entry[2]
    digest = _hash_file(Path(real))
    # Re-read before writing: another process may have cached other files meanwhile.
    entries = _read_cache(cache)
    entries[real] = [*stamp, digest]
    _write_cache(cache, entries)
    return digest
