"""Keeping a library current: watch its roots and re-index what changes (``glimpse watch``, ``serve --watch``).

How it behaves, and why:

* **One catch-up first.** Whatever changed while nothing watched (the watcher was stopped, or killed with -9) is
  found by an ordinary incremental ``index`` of the roots once the OS watch is in place: a killed watcher loses
  nothing, and a change made during the catch-up is not missed.
* **Debounced batches.** ``watchfiles`` (inotify / FSEvents / ReadDirectoryChangesW) groups events until the file
  system has been quiet for ``step_ms`` (at most ``debounce_ms``); events arriving while a run indexes are kept and
  form the next batch, so a burst of 10k new files is indexed by one or a few runs, not 10k. Between batches the
  process sleeps in the OS (no polling): idle CPU is ~0.
* **Files still being written** are waited for: a run starts only once every changed image file kept its size
  and mtime for ``settle_s`` (bounded by ``settle_timeout_s``; a file that never settles is indexed as it is
  and, when it changes again, re-indexed).
* **Renames are moves.** A run is the incremental ``index`` of the roots concerned, which sees the old path gone
  and the new one with the same content hash and re-links the row: no re-encode, tags and OCR kept.
* **One writer.** A run takes the library's writer lock only while it indexes, waiting for a manual ``index``
  (or ``tag``, ``remove``) that holds it; a manual ``index`` meeting a running watcher run waits with ``--wait``
  or says who holds the lock.
* **Ctrl-C safe.** Indexing writes each batch in one transaction; an interrupt loses at most the batch in flight,
  which the next run (or the next catch-up) redoes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from glimpse.errors import FeatureUnavailableError, UserInputError
from glimpse.images import is_candidate
from glimpse.video import is_video_name

DEFAULT_DEBOUNCE_MS = 1600
DEFAULT_STEP_MS = 300
DEFAULT_SETTLE_S = 1.0
DEFAULT_SETTLE_TIMEOUT_S = 120.0
# A watcher run waits this long for another writer (a manual index) before trying again at the next batch.
RUN_LOCK_WAIT_S = 3600.0
IDLE_WAKEUP_MS = 1000


@dataclass(frozen=True)
class WatchOptions:
    """How eagerly the watcher reacts (see the module docstring)."""

    debounce_ms: int = DEFAULT_DEBOUNCE_MS
    step_ms: int = DEFAULT_STEP_MS
    settle_s: float = DEFAULT_SETTLE_S
    settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.debounce_ms < 1 or self.step_ms < 1 or self.step_ms > self.debounce_ms:
            raise UserInputError(f"watch timings need 1 <= step ({self.step_ms} ms) <= debounce "
                                 f"({self.debounce_ms} ms)")
        if self.settle_s < 0 or self.settle_timeout_s < self.settle_s:
            raise UserInputError("the settle time must be >= 0 and no longer than its timeout")


@dataclass
class WatchRun:
    """One indexing run of the watcher: why it ran and what the index did."""

    changed: int  # changed paths in the batch (0 for the catch-up run)
    roots: list[str]
    report: Any  # glimpse.pipeline.IndexReport
    seconds: float
    catch_up: bool = False


@dataclass
class WatchState:
    """What a caller (the CLI, the server) can read while the watcher runs."""

    runs: int = 0
    last: WatchRun | None = None
    errors: list[str] = field(default_factory=list)


def _watchfiles() -> Any:
    try:
        import watchfiles
    except ImportError as exc:  # a core dependency; missing only in a broken environment
        raise FeatureUnavailableError("watching needs the watchfiles package: pip install watchfiles") from exc
    return watchfiles


def relevant(path: str, roots: Sequence[str]) -> bool:
    """Whether a changed path can matter to the library: an image or video candidate (by name) or a folder (a
    folder renamed or deleted moves or removes everything under it), inside one of ``roots``."""
    if not any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
        return False
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith((".tmp", ".part", ".crdownload", ".swp")):
        return False  # editors' and browsers' half-written temporaries
    return (is_candidate(path, b"") or is_video_name(path) or os.path.isdir(path)
            or not os.path.splitext(name)[1])


def wait_until_settled(paths: Iterable[str], *, settle_s: float, timeout_s: float,
                       stop: threading.Event | None = None) -> None:
    """Return once each existing path kept its (size, mtime) for ``settle_s`` seconds, or after ``timeout_s``."""
    def facts(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # gone again: the index run will see that
        return st.st_size, st.st_mtime_ns

    pending = {p: facts(p) for p in paths if os.path.isfile(p)}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        if stop is not None and stop.wait(settle_s):
            return
        if stop is None:
            time.sleep(settle_s)
        now = {p: facts(p) for p in pending}
        pending = {p: f for p, f in now.items() if f is not None and f != pending[p]}


def roots_of(paths: Iterable[str], roots: Sequence[str]) -> list[str]:
    """The roots (in their given order) that contain any of ``paths``."""
    touched = [r for r in roots if any(p == r or p.startswith(r.rstrip(os.sep) + os.sep) for p in paths)]
    return touched


def watch_library(library: Any, roots: Sequence[str], *, options: WatchOptions | None = None,
                  stop: threading.Event | None = None, index: Callable[[list[str]], Any] | None = None,
                  on_run: Callable[[WatchRun], None] | None = None, state: WatchState | None = None) -> WatchState:
    """Keep ``library`` current with ``roots`` until ``stop`` is set (or KeyboardInterrupt).

    ``index(roots) -> IndexReport`` runs one incremental indexing pass (default: ``library.index(roots)``; the CLI
    passes its options and progress). ``on_run`` hears of every run; ``state`` is updated in place.
    """
    options = options or WatchOptions()
    state = state or WatchState()
    stop = stop or threading.Event()
    real_roots = [os.path.realpath(os.path.expanduser(os.fspath(r))) for r in roots]
    missing = [r for r in real_roots if not os.path.isdir(r)]
    if missing:
        raise UserInputError(f"cannot watch {missing[0]}: not a folder; give folders of images to watch")
    if not real_roots:
        raise UserInputError("nothing to watch: give folders, or index some first (`glimpse index DIR`)")
    watchfiles = _watchfiles()
    run_index = index or (lambda chosen: library.index(chosen))
    library.lock_wait = RUN_LOCK_WAIT_S

    def run(changed: int, chosen: list[str], catch_up: bool = False) -> None:
        started = time.perf_counter()
        report = run_index(chosen)
        done = WatchRun(changed, chosen, report, time.perf_counter() - started, catch_up)
        state.runs += 1
        state.last = done
        if on_run is not None:
            on_run(done)

    caught_up = False
    # The OS watch starts with the first next(); the catch-up runs after it (at the first yield), so a change
    # made during the catch-up is seen by the watch instead of falling between the two. Yielding on a 1 s
    # timeout costs one wake-up per second, nothing measurable.
    for changes in watchfiles.watch(*real_roots, stop_event=stop, debounce=options.debounce_ms,
                                    step=options.step_ms, yield_on_timeout=True, rust_timeout=IDLE_WAKEUP_MS,
                                    raise_interrupt=True):
        if stop.is_set():
            break
        if not caught_up:
            run(0, real_roots, catch_up=True)  # covers this batch's changes as well
            caught_up = True
            continue
        paths = {os.path.realpath(path) if os.path.exists(path) else path for _, path in changes}
        paths = {p for p in paths if relevant(p, real_roots)}
        if not paths:
            continue
        wait_until_settled(paths, settle_s=options.settle_s, timeout_s=options.settle_timeout_s, stop=stop)
        if stop.is_set():
            break
        run(len(paths), roots_of(paths, real_roots) or real_roots)
    return state
