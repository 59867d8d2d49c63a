"""Background indexing jobs: at most one per library, with progress the page can poll or stream.

A job runs ``Library.index`` in its own thread on its *own* Library object (its own catalog connection
and vector index) that shares the server's loaded encoder. The server's searches keep reading through
their own connection (SQLite WAL: readers never wait for the writer) and catch their in-memory index up
with the catalog's change log, so they see new images batch by batch while the job runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glimpse.errors import GlimpseError

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class JobConflictError(GlimpseError):
    """An indexing job is already running for this library."""

    def __init__(self, running: Job) -> None:
        super().__init__(
            f"an indexing job ({running.id}) is already running for this library; "
            f"follow it at /api/jobs/{running.id} and start another when it is done"
        )
        self.running = running


@dataclass
class Job:
    """One indexing run. Implements the pipeline's ``Progress`` protocol (start/advance/finish)."""

    id: str
    roots: list[str]
    state: str = QUEUED
    total: int | None = None
    done: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    version: int = 0  # bumped on every change, so event streams send only news
    activity: str | None = None  # what a long step is doing now ("sampling lecture.mp4: 40%"), from note()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- Progress protocol ---------------------------------------------------------------------------
    def start(self, total: int) -> None:
        with self._lock:
            self.total, self.done = total, 0
            self.version += 1

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self.version += 1

    def finish(self) -> None:
        pass  # the job's end is recorded by JobManager, with the report or the error

    def note(self, text: str | None) -> None:
        self._set(activity=text)

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    def to_dict(self) -> dict[str, Any]:
        """A consistent JSON-ready snapshot (taken under the job's lock)."""
        with self._lock:
            return {
                "id": self.id, "state": self.state, "roots": list(self.roots), "total": self.total,
                "done": self.done, "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "report": self.report, "error": self.error,
                "version": self.version, "activity": self.activity,
            }


class JobManager:
    """Starts jobs in threads, one at a time, and remembers the last ``keep`` of them."""

    def __init__(self, keep: int = 20) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._keep = keep

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if not j.finished), None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self) -> Job | None:
        with self._lock:
            return next(reversed(self._jobs.values()), None)

    def start(self, roots: list[str], work: Callable[[Job], dict[str, Any]]) -> Job:
        """Run ``work(job)`` (returning the report dict) in a thread; JobConflictError if one is running."""
        with self._lock:
            busy = next((j for j in self._jobs.values() if not j.finished), None)
            if busy is not None:
                raise JobConflictError(busy)
            job = Job(uuid.uuid4().hex[:12], roots)
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs))
                if not self._jobs[oldest].finished:
                    break
                del self._jobs[oldest]
        threading.Thread(target=self._run, args=(job, work), name=f"glimpse-job-{job.id}", daemon=True).start()
        return job

    @staticmethod
    def _run(job: Job, work: Callable[[Job], dict[str, Any]]) -> None:
        job._set(state=RUNNING, started_at=time.time())
        try:
            report = work(job)
        except GlimpseError as exc:
            job._set(state=FAILED, error=str(exc), finished_at=time.time())
        except Exception as exc:  # a job thread must always end in a visible state
            job._set(state=FAILED, error=f"internal error: {type(exc).__name__}: {exc}", finished_at=time.time())
        else:
            job._set(state=DONE, report=report, finished_at=time.time())

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs (server shutdown); True if idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running() is not None:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
