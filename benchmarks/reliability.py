"""Reliability benchmark of issue [J] (#11): kill -9, the corruption matrix and the hostile corpus.

Everything goes through glimpse's public surfaces: the ``glimpse`` CLI run as subprocesses
(``python -m glimpse``) for every action, and the Python API (``glimpse.open_library``) only to compute
reference vectors (a fresh encode of each file in an empty scratch library) and to read the catalog.

1. **kill -9.** A folder grows and changes between runs (files added, duplicated, modified, touched,
   deleted, moved); ``index``, ``index --tags`` and ``rebuild-index`` runs are SIGKILLed at random points
   (a random delay within the calibrated run time, or right after the catalog shows new progress). Then a
   clean ``index`` and the checks: every run that was not killed exited 0; every image on disk has a
   vector of the model (files lost); every FAISS vector equals the catalog's vector of its id and every
   catalog vector equals a fresh encode of the file it is attached to (wrong vectors); ``status`` works
   and agrees; SQLite's integrity check passes; no ``.tmp`` file is left in the library.
2. **Corruption matrix.** An indexed library is damaged one way per case (garbage in the ``.faiss`` body,
   a truncated ``.faiss``, manifests ``[1,2]`` / ``null`` / ``"applied_change": "abc"`` / bad
   ``search_params``, ``index/`` replaced by a file, a damaged catalog page, the catalog deleted with the
   stale index left), then ``search``, ``similar``, ``status``, ``index``, ``search``, ``similar`` run in
   turn. Each step gets a verdict: ``ok`` (exit 0, results correct: every hit's score is the cosine of
   the query and the file's true vector, and the scores are the true top k), ``notice`` (the same, with a
   ``notice:`` line), ``error`` (exit 1 and one ``error:`` line) or a failure (a traceback, a hang, wrong
   results, an error where only derived data was damaged, ``status`` saying all is well while results
   are wrong, advice to throw away a healthy catalog).
3. **Hostile corpus.** Each entry of ``tests/hostile.py`` and the issue's bad files (10000×1 and
   100000×1 PNGs, a FIFO and a symlink to /dev/zero named ``x.jpg``, a big file of zeros named
   ``big.jpg``, a path longer than PATH_MAX, names with ESC / CR / LF) is indexed alone in a fresh
   library by a fresh child, with a timeout (a hang is a failure) and a memory watchdog; one more run
   swaps files for FIFOs while it indexes them. Peak RSS per input is the child's ``VmHWM`` (polled);
   goals: ≤ 300 MB for a file ≤ 1 MB, ≤ 1 GB for a file under 100 MB. Human output must not carry the
   raw control characters of a file name.

No network: the model is a tiny random CLIP (``tests/tiny_models.py``; 224-pixel input so preprocessing
costs what a real CLIP's does, 2 layers of width 32 so encoding is cheap), exported to ONNX with
``glimpse export`` by default (a start-up of ~2 s per command instead of ~15 s for torch, so many kills
fit). ``--model DIR`` reuses a model (built there first if DIR does not exist yet).

    PYTHONPATH=src python benchmarks/reliability.py --quick [--json out.json]
    PYTHONPATH=src python benchmarks/reliability.py [--kills 40] [--count 200] [--big-mb 1024] \
        [--images ../shared/data/coco128/images] [--model /tmp/rel-model] [--backend onnx|torch] \
        [--sections kills,matrix,hostile]

Measured on the shared 2-core EPYC: ``--quick`` 8-10 min (model build ~75 s of it; pass ``--model DIR`` to
build it once), the default 13 min. The exit status is 0 when every check passed and 1 otherwise (a failing
check is a finding, not a crash).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(ROOT / "tests"))

MB = 1024 * 1024
VECTOR_TOL = 1e-3  # a vector matches its reference when no component differs by more than this
SCORE_TOL = 2e-3  # hit scores are rounded to 6 decimals in JSON; wrong vectors are off by ~0.1-1
POLL_S = 0.02
QUERY = "a photo"
TOP_K = 5
TRACEBACK = "Traceback (most recent call last)"


# -- environment -------------------------------------------------------------------------------------------
def cpu_facts() -> dict[str, Any]:
    """CPU model and the SIMD flags that change numerics and speed (avx2 / avx512 / vnni)."""
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def child_env() -> dict[str, str]:
    """The children import this checkout's glimpse and never touch the network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


# -- running the CLI -------------------------------------------------------------------------------------
@dataclass
class Run:
    """One finished child: exit code (negative = signal), output, wall time, peak RSS (MB, polled) and why it
    ended."""

    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    killed: bool = False  # SIGKILLed on purpose (a kill -9 round)
    timed_out: bool = False  # ran past its timeout: a hang
    capped: bool = False  # killed by the memory watchdog

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    def line(self) -> str:
        """The one line a user sees: the first ``error:``/``notice:`` line, else the last stderr line."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        for ln in lines:
            if ln.startswith(("error:", "notice:")):
                return ln[:200]
        if self.traceback and lines:
            return "traceback: " + lines[-1][:180]
        return lines[-1][:200] if lines else ""

    def notices(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("notice:")]

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process in MB; zeros once it is gone."""
    found = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line[:6] in found:
                    found[line[:6]] = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return found["VmRSS:"], found["VmHWM:"]


def supervise(argv: list[str], *, timeout: float, rss_cap_mb: float,
              kill_when: Callable[[float], bool] | None = None) -> Run:
    """Run ``argv`` to the end, SIGKILLing it when ``kill_when(elapsed)`` says so, on timeout, or when its
    RSS passes ``rss_cap_mb``.

    Peak RSS is the child's ``VmHWM`` polled every ``POLL_S``: ``ru_maxrss`` would be wrong here, as Linux
    carries the forking parent's high-water mark (this benchmark's, with its encoder) across ``exec``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(),
                                start_new_session=True)
        start = time.monotonic()
        killed = timed_out = capped = False
        peak = 0.0
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - start
            rss, hwm = _memory_mb(proc.pid)
            peak = max(peak, hwm, rss)
            if not (killed or timed_out or capped):
                killed = kill_when is not None and kill_when(elapsed)
                timed_out = not killed and elapsed > timeout
                capped = not (killed or timed_out) and rss > rss_cap_mb
                if killed or timed_out or capped:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by waitpid: tell Popen
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Run(argv, proc.returncode, out.read().decode("utf-8", "replace"),
                   err.read().decode("utf-8", "replace"), seconds, peak, killed, timed_out, capped)


@dataclass
class Cli:
    """``python -m glimpse --library LIB --model MODEL …`` with this benchmark's limits."""

    model: Path
    timeout: float
    rss_cap_mb: float

    def argv(self, library: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "glimpse", "--library", str(library), "--model", str(self.model), *args]

    def run(self, library: Path, *args: str, timeout: float | None = None,
            kill_when: Callable[[float], bool] | None = None) -> Run:
        return supervise(self.argv(library, *args), timeout=timeout or self.timeout, rss_cap_mb=self.rss_cap_mb,
                         kill_when=kill_when)


# -- the model -------------------------------------------------------------------------------------------
def build_model(directory: Path, backend: str) -> Path:
    """A tiny random CLIP (224-px input) in the real HF format; with ``onnx``, exported by ``glimpse export``.
    Returns the directory to pass as ``--model``."""
    torch_dir = directory / "tiny-clip-224"
    if not (torch_dir / "config.json").is_file():
        from tiny_models import make_tiny_clip  # torch + transformers: only needed to build the model

        make_tiny_clip(torch_dir, image_size=224, projection_dim=16, seed=0)
    if backend == "torch":
        return torch_dir
    onnx_dir = directory / "tiny-clip-224-onnx"
    if not (onnx_dir / "spec.json").is_file():
        done = subprocess.run([sys.executable, "-m", "glimpse", "export", str(torch_dir), str(onnx_dir)],
                              env=child_env(), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"glimpse export failed:\n{done.stderr}")
    return onnx_dir


def resolve_model(args: argparse.Namespace, workdir: Path) -> Path:
    if args.model is None:
        return build_model(workdir / "model", args.backend)
    model = Path(args.model)
    if (model / "config.json").is_file() or (model / "spec.json").is_file():
        return model  # a ready checkpoint or ONNX export
    return build_model(model, args.backend)


class Truth:
    """Reference vectors: each file freshly encoded in an empty scratch library (cached by content)."""

    def __init__(self, model: Path, scratch: Path) -> None:
        import glimpse

        self.lib = glimpse.open_library(scratch, model=str(model))
        self.key = self.lib.spec.key
        self._by_digest: dict[str, np.ndarray] = {}

    def image(self, path: str) -> np.ndarray:
        with open(path, "rb") as fh:
            digest = hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
        if digest not in self._by_digest:
            self._by_digest[digest] = np.asarray(self.lib.image_vector(path), dtype=np.float32)
        return self._by_digest[digest]

    def text(self, query: str) -> np.ndarray:
        return np.asarray(self.lib.query_vector(query), dtype=np.float32)

    def close(self) -> None:
        self.lib.close()


# -- images ----------------------------------------------------------------------------------------------
class Photos:
    """Where new images come from: copies of ``--images`` (if given), else generated photos."""

    def __init__(self, source: Path | None, size: tuple[int, int], rng: random.Random) -> None:
        exts = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
        self.pool = sorted(p for p in source.iterdir() if p.suffix.lower() in exts) if source else []
        self.size = size
        self.rng = rng
        self.next_seed = 1000
        self.next_name = 0

    def add(self, folder: Path) -> Path:
        self.next_name += 1
        if self.pool:
            src = self.pool[(self.next_name - 1) % len(self.pool)]
            path = folder / f"p{self.next_name:05d}{src.suffix.lower()}"
            shutil.copyfile(src, path)
            if self.next_name > len(self.pool):  # the pool is used up: a changed copy, so not a duplicate
                modify_image(path, self.rng)
            return path
        from hostile import picture

        self.next_seed += 1
        path = folder / f"p{self.next_name:05d}.jpg"
        picture(self.next_seed, self.size).save(path, quality=90)
        return path


def modify_image(path: Path, rng: random.Random) -> None:
    """Change the pixels (a coloured block) and re-save in the same format: a content change."""
    with Image.open(path) as im:
        fmt = im.format or "JPEG"
        im = im.convert("RGB")
    w, h = im.size
    x, y = rng.randrange(max(1, w - w // 3)), rng.randrange(max(1, h - h // 3))
    im.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + w // 3, y + h // 3))
    im.save(path, format=fmt)


def image_files(folder: Path) -> list[str]:
    """Every regular file below ``folder`` (the benchmark's folders hold only images), as scanned."""
    found = []
    for directory, _, names in os.walk(os.path.realpath(folder)):
        found += [os.path.join(directory, n) for n in names if not n.startswith(".")]
    return sorted(found)


def mutate(folder: Path, photos: Photos, rng: random.Random) -> list[str]:
    """Change the folder like a user would between runs; returns what was done."""
    done = []
    files = image_files(folder)
    for op in rng.sample(["add", "add", "duplicate", "modify", "touch", "delete", "move"], k=rng.randint(2, 4)):
        n = rng.randint(1, 4)
        picked = rng.sample(files, k=min(n, len(files)))
        if op == "add":
            for _ in range(n):
                photos.add(folder)
        elif op == "duplicate":
            for i, src in enumerate(picked):
                shutil.copyfile(src, folder / f"copy_{photos.next_name}_{i}_{Path(src).name}")
        elif op == "modify":
            for p in picked:
                modify_image(Path(p), rng)
        elif op == "touch":
            for p in picked:
                os.utime(p, ns=(time.time_ns(), time.time_ns()))
        elif op == "delete":
            for p in picked:
                os.unlink(p)
        elif op == "move":
            sub = folder / f"moved{rng.randint(0, 3)}"
            sub.mkdir(exist_ok=True)
            for p in picked:
                target = sub / Path(p).name
                if not target.exists():
                    os.rename(p, target)
        files = image_files(folder)
        done.append(f"{op} {n if op == 'add' else len(picked)}")
    return done


# -- reading the library back ----------------------------------------------------------------------------
def faiss_vectors(index_dir: Path, model_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(int64[n] ids, float32[n, d])`` of the saved FAISS index of ``model_key``, found by its manifest."""
    import faiss

    for manifest in sorted(index_dir.glob("*.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("model_key") != model_key:
            continue
        index = faiss.read_index(str(manifest.with_suffix(".faiss")))
        if not hasattr(index, "id_map"):
            raise RuntimeError(f"{manifest.with_suffix('.faiss')} is not a flat IDMap index; use a smaller --count")
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)
        vectors = np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, index.d))
        return ids, vectors.astype(np.float32)
    return None


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= VECTOR_TOL


def inspect_library(library: Path, folder: Path, truth: Truth) -> dict[str, Any]:
    """Compare the library with the folder on disk: lost files, ghosts, wrong vectors, leftovers."""
    from glimpse.catalog import CATALOG_FILENAME, Catalog

    on_disk = image_files(folder)
    catalog = Catalog(library / CATALOG_FILENAME)
    try:
        records = catalog.files_under(os.path.realpath(folder))
        ids, vectors = catalog.embeddings(truth.key)
        integrity = catalog.integrity_check()
    finally:
        catalog.close()
    stored = dict(zip(ids.tolist(), vectors, strict=True))
    lost = [p for p in on_disk if p not in records or records[p].id not in stored]
    disk = set(on_disk)
    ghosts = [p for p, rec in records.items() if rec.state == "ok" and p not in disk]
    wrong_catalog = [p for p in on_disk if p not in lost and not close(stored[records[p].id], truth.image(p))]
    saved = faiss_vectors(library / "index", truth.key)
    faiss_ids, faiss_vecs = saved if saved is not None else (np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    in_faiss = dict(zip(faiss_ids.tolist(), faiss_vecs, strict=True))
    return {
        "on_disk": len(on_disk),
        "catalogued_ok": sum(rec.state == "ok" for rec in records.values()),
        "vectors": len(stored),
        "files_lost": lost,
        "ghosts": ghosts,
        "catalog_vs_fresh_encode_wrong": wrong_catalog,
        "faiss_saved": saved is not None,
        "faiss_missing": sorted(set(stored) - set(in_faiss)),
        "faiss_extra": sorted(set(in_faiss) - set(stored)),
        "faiss_vs_catalog_wrong": sorted(i for i in set(stored) & set(in_faiss) if not close(stored[i], in_faiss[i])),
        "integrity_check": integrity,
        "tmp_files": sorted(str(p.relative_to(library)) for p in library.rglob("*.tmp")),
    }


def last_change_id(catalog_path: Path) -> int:
    """The newest change-log id, read-only (0 before the schema exists or while busy): progress so far."""
    try:
        db = sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True, timeout=0.05)
        try:
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


# -- 1. kill -9 ------------------------------------------------------------------------------------------
COMMANDS = {"index": ("index", "{folder}", "--json", "--batch-size", "4", "--workers", "2"),
            "index --tags": ("index", "{folder}", "--tags", "--json", "--batch-size", "4", "--workers", "2"),
            "rebuild-index": ("rebuild-index",)}
# Each block of five runs after the first holds every command (shuffled): 3 index, 1 index --tags, 1 rebuild-index.
COMMAND_BLOCK = ("index", "index", "index", "index --tags", "rebuild-index")


def command_args(name: str, folder: Path) -> list[str]:
    return [a.format(folder=folder) for a in COMMANDS[name]]


def calibrate(cli: Cli, folder: Path, scratch: Path) -> dict[str, float]:
    """Clean run times on a throw-away library: full index, no-op index, index --tags, rebuild-index."""
    times = {}
    for label, name in (("index_full", "index"), ("index_noop", "index"), ("index --tags", "index --tags"),
                        ("rebuild-index", "rebuild-index")):
        run = cli.run(scratch, *command_args(name, folder))
        if run.rc != 0:
            raise SystemExit(f"calibration run `{name}` failed ({run.rc}): {run.line()}\n{run.stderr[-2000:]}")
        times[label] = round(run.seconds, 2)
    return times


def kill_plan(name: str, times: dict[str, float], work: int, count: int, catalog: Path,
              rng: random.Random) -> tuple[str, Callable[[float], bool]]:
    """When to kill this run: after a random delay within its expected time, or (index runs, half of the
    time) right after the catalog shows a random amount of new progress, so the kill lands mid-batch."""
    per_image = max(times["index_full"] - times["index_noop"], 0.1) / max(count, 1)
    expected = {"index": times["index_noop"] + per_image * work,
                "index --tags": times["index --tags"] + per_image * work,
                "rebuild-index": times["rebuild-index"]}[name]
    if name != "rebuild-index" and rng.random() < 0.5:
        start, target = last_change_id(catalog), rng.randint(1, 12)
        settle = rng.uniform(0.0, 0.05)
        seen: dict[str, float] = {}

        def after_progress(elapsed: float) -> bool:
            if "at" not in seen and last_change_id(catalog) - start >= target:
                seen["at"] = elapsed
            return "at" in seen and elapsed - seen["at"] >= settle

        return f"after {target} new change(s)", after_progress
    delay = rng.uniform(0.05, 1.05) * expected
    return f"after {delay:.2f} s", lambda elapsed: elapsed >= delay


def kills_section(cli: Cli, args: argparse.Namespace, work: Path, truth: Truth) -> dict[str, Any]:
    rng = random.Random(args.seed)
    folder, library = work / "kill-folder", work / "kill-library"
    folder.mkdir()
    photos = Photos(args.images, args.photo_size, rng)
    for _ in range(args.count):
        photos.add(folder)
    print(f"[kills] calibrating on {args.count} images …", flush=True)
    times = calibrate(cli, folder, work / "calibration-library")
    print(f"[kills] clean run times (s): {times}", flush=True)
    from glimpse.catalog import CATALOG_FILENAME

    rounds, kills, failures = [], 0, []
    schedule: list[str] = []
    while kills < args.kills and len(rounds) < 4 * args.kills + 4:
        ops = mutate(folder, photos, rng) if rounds else ["(first run)"]
        if not schedule:
            schedule = rng.sample(COMMAND_BLOCK, k=len(COMMAND_BLOCK))
        name = "index" if not rounds else schedule.pop()
        work_estimate = args.count if not rounds else 6
        plan, kill_when = kill_plan(name, times, work_estimate, args.count, library / CATALOG_FILENAME, rng)
        run = cli.run(library, *command_args(name, folder), kill_when=kill_when)
        kills += run.killed
        entry = {"round": len(rounds) + 1, "changes": ops, "command": name, "kill": plan, "killed": run.killed,
                 "rc": run.rc, "seconds": round(run.seconds, 2), "line": run.line()}
        if not run.killed and run.rc != 0:
            entry["failed"] = True
            failures.append(f"round {entry['round']}: `{name}` after a kill exited {run.rc}: {run.line()}")
        rounds.append(entry)
        print(f"[kills] {entry['round']:>3} {name:<14} {plan:<22} -> "
              f"{'KILLED' if run.killed else f'rc {run.rc}'} ({run.seconds:.1f} s) {' '.join(ops)}", flush=True)
    final = cli.run(library, *command_args("index", folder))
    status = cli.run(library, "status", "--json")
    checks = inspect_library(library, folder, truth)
    status_data = status.json() if status.rc == 0 else None
    if final.rc != 0:
        failures.append(f"final clean index exited {final.rc}: {final.line()}")
    failures += kill_check_failures(checks, status, status_data)
    # A kill is survived when the run after it (the next round, or the final clean index) did not fail;
    # what the kills did to the library is in the checks (files lost, wrong vectors).
    after = [*(r.get("failed", False) for r in rounds[1:]), final.rc != 0]
    survived = sum(1 for r, next_failed in zip(rounds, after, strict=True) if r["killed"] and not next_failed)
    by_command = {n: sum(r["killed"] for r in rounds if r["command"] == n) for n in COMMANDS}
    return {"calibration_s": times, "rounds": rounds, "kills": kills, "kills_by_command": by_command,
            "kills_survived": survived,
            "final_index": {"rc": final.rc, "line": final.line()},
            "status": {"rc": status.rc, "line": status.line(),
                       **({k: status_data[k] for k in ("images", "vectors", "index_vectors")} if status_data else {})},
            "checks": checks, "failures": failures}


def kill_check_failures(checks: dict[str, Any], status: Run, status_data: Any) -> list[str]:
    failures = []
    for key, label in (("files_lost", "image(s) on disk without a vector"), ("ghosts", "ghost file(s) in the catalog"),
                       ("catalog_vs_fresh_encode_wrong", "catalog vector(s) differ from a fresh encode of their file"),
                       ("faiss_missing", "catalog vector(s) missing from the FAISS index"),
                       ("faiss_extra", "FAISS id(s) the catalog does not have"),
                       ("faiss_vs_catalog_wrong", "FAISS vector(s) differ from the catalog's"),
                       ("tmp_files", ".tmp file(s) left in the library")):
        if checks[key]:
            failures.append(f"{len(checks[key])} {label}: {checks[key][:3]}")
    if not checks["faiss_saved"]:
        failures.append("no saved FAISS index for the model after the final index")
    if checks["integrity_check"] != ["ok"]:
        failures.append(f"SQLite integrity check: {checks['integrity_check'][:3]}")
    if status.rc != 0 or status_data is None:
        failures.append(f"status exited {status.rc}: {status.line()}")
    elif not (status_data["images"] == checks["on_disk"] == status_data["vectors"] == status_data["index_vectors"]):
        failures.append(f"status disagrees with the disk ({checks['on_disk']} images): images "
                        f"{status_data['images']}, vectors {status_data['vectors']}, "
                        f"index {status_data['index_vectors']}")
    return failures


# -- 2. corruption matrix --------------------------------------------------------------------------------
@dataclass
class MatrixContext:
    """The case's library, the shared folder, and the files the queries use."""

    library: Path
    folder: Path
    similar_target: str
    rng: random.Random

    @property
    def faiss_file(self) -> Path:
        return next((self.library / "index").glob("*.faiss"))

    @property
    def manifest(self) -> Path:
        return next((self.library / "index").glob("*.json"))


def garbage_in_index_body(ctx: MatrixContext) -> str:
    path = ctx.faiss_file
    size, count = path.stat().st_size, len(image_files(ctx.folder))
    # Stay inside the vector codes (before the trailing id map, 8 bytes per id): faiss still reads the file.
    length = max(16, min(4096, size - 200 - 8 * count - 64))
    with open(path, "r+b") as fh:
        fh.seek(200)
        fh.write(ctx.rng.randbytes(length))
    return f"{length} random bytes at offset 200 of the {size}-byte .faiss"


def truncated_index(ctx: MatrixContext) -> str:
    path = ctx.faiss_file
    size = path.stat().st_size
    os.truncate(path, size // 2)
    return f".faiss truncated {size} -> {size // 2} bytes"


def manifest_replaced(text: str) -> Callable[[MatrixContext], str]:
    def damage(ctx: MatrixContext) -> str:
        ctx.manifest.write_text(text, encoding="utf-8")
        return f"manifest is {text}"

    return damage


def manifest_field(key: str, value: Any) -> Callable[[MatrixContext], str]:
    def damage(ctx: MatrixContext) -> str:
        data = json.loads(ctx.manifest.read_text(encoding="utf-8"))
        data[key] = value
        ctx.manifest.write_text(json.dumps(data), encoding="utf-8")
        return f"manifest {key!r} set to {value!r}"

    return damage


def index_dir_is_file(ctx: MatrixContext) -> str:
    shutil.rmtree(ctx.library / "index")
    (ctx.library / "index").write_text("not a directory\n", encoding="utf-8")
    return "index/ replaced by a regular file"


def catalog_page(find: Callable[[MatrixContext], bytes], what: str) -> Callable[[MatrixContext], str]:
    """Overwrite the SQLite page that holds ``find(ctx)``'s bytes with random bytes."""

    def damage(ctx: MatrixContext) -> str:
        from glimpse.catalog import CATALOG_FILENAME

        path = ctx.library / CATALOG_FILENAME
        data = path.read_bytes()
        page_size = int.from_bytes(data[16:18], "big") or 65536
        offset = data.find(find(ctx))
        if offset < 0:
            raise RuntimeError(f"cannot find the {what} in {path}")
        page = max(offset // page_size, 1)  # never page 0: the header would make it "not a database"
        with open(path, "r+b") as fh:
            fh.seek(page * page_size)
            fh.write(ctx.rng.randbytes(page_size))
        return f"catalog page {page + 1} (holding {what}) overwritten with random bytes"

    return damage


def a_path_bytes(ctx: MatrixContext) -> bytes:
    return os.fsencode(image_files(ctx.folder)[len(image_files(ctx.folder)) // 4])


def a_vector_bytes(ctx: MatrixContext) -> bytes:
    from glimpse.catalog import CATALOG_FILENAME, Catalog

    catalog = Catalog(ctx.library / CATALOG_FILENAME)
    try:
        _, vectors = catalog.embeddings(catalog.models()[0]["key"])
    finally:
        catalog.close()
    return vectors[len(vectors) // 4].astype(np.float32).tobytes()


def catalog_deleted(ctx: MatrixContext) -> str:
    from glimpse.catalog import CATALOG_FILENAME
    from hostile import picture

    for suffix in ("", "-wal", "-shm"):
        Path(f"{ctx.library / CATALOG_FILENAME}{suffix}").unlink(missing_ok=True)
    # The same number of files, each one id lower in the new catalog than in the stale index: deleting the
    # first file (by name: the scan order) shifts every id, a new last file keeps the count.
    files = image_files(ctx.folder)
    os.unlink(files[0])
    picture(99_999, (160, 120)).save(Path(files[-1]).with_name("zz_new.jpg"), quality=90)
    return "catalog.sqlite3* deleted (index/ left); first file deleted, a new last file added (same count)"


@dataclass(frozen=True)
class Case:
    name: str
    damage: Callable[[MatrixContext], str]
    catalog_intact: bool = True  # advice to throw the catalog away is destructive
    must_answer: bool = False  # only derived data is damaged: queries must be answered correctly


CASES = (
    Case("index body: garbage", garbage_in_index_body, must_answer=True),
    Case("index body: truncated", truncated_index, must_answer=True),
    Case("manifest [1,2]", manifest_replaced("[1,2]")),
    Case("manifest null", manifest_replaced("null")),
    Case("manifest applied_change 'abc'", manifest_field("applied_change", "abc")),
    Case("manifest search_params bad", manifest_field("search_params", "nprobe=banana")),
    Case("index/ is a file", index_dir_is_file),
    Case("catalog page: files", catalog_page(a_path_bytes, "a file path"), catalog_intact=False),
    Case("catalog page: embeddings", catalog_page(a_vector_bytes, "a vector"), catalog_intact=False),
    Case("catalog deleted, stale index", catalog_deleted, catalog_intact=False),  # last: it changes the folder
)

STEPS = ("search", "similar", "status", "index", "search after index", "similar after index")
QUICK_STEPS = ("search", "status", "index", "similar after index")


def check_hits(hits: Any, query: np.ndarray, folder: Path, truth: Truth) -> str | None:
    """None when the hits are right (each score = cosine with the file's true vector, the true top k), else why."""
    files = image_files(folder)
    true = np.stack([truth.image(p) for p in files])
    expected = np.sort(true @ query)[::-1][: min(TOP_K, len(files))]
    if not isinstance(hits, list):
        return "output is not a JSON list"
    by_path = dict(zip(files, true, strict=True))
    for hit in hits:
        vector = by_path.get(hit.get("path"))
        if vector is None:
            return f"hit {hit.get('path')!r} is not a file of the folder"
        if abs(float(hit["score"]) - float(vector @ query)) > SCORE_TOL:
            return f"hit {Path(hit['path']).name} scores {hit['score']:.4g}, its true cosine is {vector @ query:.4f}"
    scores = np.array([float(h["score"]) for h in hits])
    if len(scores) != len(expected) or np.max(np.abs(np.sort(scores)[::-1] - expected), initial=0) > SCORE_TOL:
        return f"{len(scores)} hits are not the true top {len(expected)}"
    return None


def verdict(step: str, run: Run, ctx: MatrixContext, truth: Truth) -> tuple[str, str]:
    """(``ok`` | ``notice`` | ``error`` | ``FAIL``, detail) for one step of a case."""
    if run.timed_out:
        return "FAIL", f"hung (> {run.seconds:.0f} s)"
    if run.traceback:
        return "FAIL", run.line()
    if run.rc == 1:
        errors = [ln for ln in run.stderr.splitlines() if ln.strip() and not ln.startswith("notice:")]
        ok = len(errors) == 1 and errors[0].startswith("error:")
        return ("error", run.line()) if ok else ("FAIL", f"rc 1 without one error line: {run.line()}")
    if run.rc != 0:
        return "FAIL", f"rc {run.rc}: {run.line()}"
    kind = "notice" if run.notices() else "ok"
    data = run.json()
    if step.startswith(("search", "similar")):
        query = truth.text(QUERY) if step.startswith("search") else truth.image(ctx.similar_target)
        wrong = check_hits(data, query, ctx.folder, truth)
        if wrong:
            return "FAIL", "wrong results: " + wrong
        return kind, run.line() if kind == "notice" else f"{len(data)} correct hits"
    if step == "status":
        if not isinstance(data, dict):
            return "FAIL", "status --json printed no JSON object"
        detail = f"{data.get('images')} images, {data.get('vectors')} vectors, {data.get('index_vectors')} in index"
        return kind, (run.line() + "; " if kind == "notice" else "") + detail
    return kind, run.line() or "ok"


def case_failures(case: Case, steps: dict[str, dict[str, str]]) -> list[str]:
    failures = [f"{case.name}: {s}: {v['detail']}" for s, v in steps.items() if v["verdict"] == "FAIL"]
    wrong_before = any("wrong results" in steps[s]["detail"] for s in ("search", "similar") if s in steps)
    status = steps["status"]
    if wrong_before and status["verdict"] == "ok":
        failures.append(f"{case.name}: status says all is well ({status['detail']}) while results are wrong")
    for s in steps:
        if case.must_answer and steps[s]["verdict"] == "error":
            failures.append(f"{case.name}: {s}: refused although only the derived index was damaged: "
                            f"{steps[s]['detail']}")
    if case.catalog_intact:
        for s, v in steps.items():
            text = v["detail"].lower()
            if v["verdict"] == "error" and "catalog" in text and any(w in text for w in ("move", "delete", "remove")):
                failures.append(f"{case.name}: {s}: advises throwing away a healthy catalog: {v['detail']}")
    return failures


def matrix_section(cli: Cli, args: argparse.Namespace, work: Path, truth: Truth) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    folder, pristine = work / "matrix-folder", work / "matrix-pristine"
    folder.mkdir()
    photos = Photos(args.images, args.photo_size, rng)
    for _ in range(args.matrix_count):
        photos.add(folder)
    first = cli.run(pristine, *command_args("index", folder))
    if first.rc != 0:
        raise SystemExit(f"indexing the matrix library failed: {first.line()}\n{first.stderr[-2000:]}")
    files = image_files(folder)
    target = files[len(files) // 2]
    cases, failures = [], []
    for n, case in enumerate(CASES):
        library = work / f"matrix-case-{n}"
        shutil.copytree(pristine, library)
        ctx = MatrixContext(library, folder, target, rng)
        damage = case.damage(ctx)
        steps = {}
        for step in QUICK_STEPS if args.quick else STEPS:
            base = step.removesuffix(" after index")
            cmd = {"search": ["search", QUERY, "-k", str(TOP_K), "--json"],
                   "similar": ["similar", target, "-k", str(TOP_K), "--json"],
                   "status": ["status", "--json"], "index": command_args("index", folder)}[base]
            run = cli.run(library, *cmd)
            kind, detail = verdict(step, run, ctx, truth)
            steps[step] = {"verdict": kind, "rc": run.rc, "detail": detail}
        found = case_failures(case, steps)
        failures += found
        cases.append({"case": case.name, "damage": damage, "steps": steps, "failures": found})
        print(f"[matrix] {case.name:<32} " + " | ".join(f"{s}: {v['verdict']}" for s, v in steps.items()), flush=True)
    return {"images": len(files), "cases": cases, "failures": failures}


# -- 3. hostile corpus -----------------------------------------------------------------------------------
@dataclass
class Hostile:
    """One bad input, built alone in a fresh folder. ``expect``: ``indexed``, ``failed:<reason substring>``,
    ``ignored`` (no state, not reported), ``not-indexed`` (reported or passed over), ``stated`` (indexed, or
    failed with a reason) or ``indexed+failed`` (some files of the folder each)."""

    key: str
    build: Callable[[Path], str]  # writes the input under the folder, returns its path
    expect: str
    note: str = ""
    # control characters of the name that must not reach human output raw
    raw_in_name: str | None = None
    # called with (folder, library): a poll callback run while indexing (never asks for a kill)
    during: Callable[[Path, Path], Callable[[float], bool]] | None = None
    expected_added: int = 1  # with ``indexed``: how many files the run must add


def corpus_entry(keys: set[str]) -> Callable[[Path], str]:
    """Build the whole tests/hostile.py corpus in the folder, then delete every entry but ``keys``."""

    def build(folder: Path) -> str:
        from hostile import make_hostile_corpus

        corpus = make_hostile_corpus(folder)
        kept = [corpus[k] for k in sorted(keys)]
        for other in corpus.files.values():
            if other.key in keys:
                continue
            if os.path.isdir(other.raw) and not os.path.islink(other.raw):
                if not any(k.raw.startswith(other.raw + b"/") for k in kept):
                    shutil.rmtree(other.raw)
            elif os.path.lexists(other.raw):  # files, symlinks, FIFOs
                os.unlink(other.raw)
        sub = folder / "sub"
        if sub.is_dir() and not os.listdir(sub):
            sub.rmdir()
        return max((k.path for k in kept), key=input_size)

    return build


def corpus_entries(group_good: bool) -> list[Hostile]:
    """One entry per tests/hostile.py file; with ``group_good`` (--quick) the good files go in one run."""
    from hostile import make_hostile_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_hostile_corpus(Path(tmp) / "c")
        os.chmod(corpus["unreadable"].raw, 0o644)  # so the temporary directory can be removed
    good = {f.key for f in corpus.files.values() if f.good}
    entries = []
    if group_good:
        entries.append(Hostile(f"corpus: {len(good)} good files", corpus_entry(good), "indexed",
                               "all decodable files of the corpus in one run", expected_added=len(good)))
    for f in corpus.files.values():
        if f.good and group_good:
            continue
        if f.good:
            expect = "indexed"
        elif not f.candidate:
            expect = "ignored"
        else:  # a non-regular entry may be passed over (tests/hostile.py); a file must say why it failed
            expect = f"failed:{f.reason}" if f.regular else "not-indexed"
        entries.append(Hostile(f"corpus:{f.key}", corpus_entry({f.key}), expect, f.note))
    return entries


def wide_png(width: int) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        path = folder / f"wide_{width}x1.png"
        Image.new("L", (width, 1), 128).save(path, optimize=True)
        return str(path)

    return build


def fifo(folder: Path) -> str:
    os.mkfifo(folder / "x.jpg")
    return str(folder / "x.jpg")


def devzero_link(folder: Path) -> str:
    os.symlink("/dev/zero", folder / "x.jpg")
    return str(folder / "x.jpg")


def zeros(name: str, size: int) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        with open(folder / name, "wb") as fh:
            fh.truncate(size)  # sparse: reading it still yields `size` zero bytes
        return str(folder / name)

    return build


def longer_than_path_max(folder: Path) -> str:
    """A valid JPEG below nested folders whose full path is longer than PATH_MAX (built with dir fds)."""
    from hostile import encode, picture

    limit = os.pathconf(folder, "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
    fd = os.open(folder, os.O_RDONLY)
    depth = 0
    try:
        while len(str(folder)) + depth * 201 <= limit + 200:
            name = f"d{depth:03d}" + "x" * 196
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, depth = child, depth + 1
        out = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with open(out, "wb") as fh:
            fh.write(encode(picture(77, (48, 32)), "JPEG"))
    finally:
        os.close(fd)
    return str(folder) + "".join(f"/d{i:03d}" + "x" * 196 for i in range(depth)) + "/deep.jpg"


def control_name(marker: str) -> Callable[[Path], str]:
    """A good JPEG and a text file (that fails, so its name is printed) whose names carry ``marker``."""

    def build(folder: Path) -> str:
        from hostile import picture

        picture(88, (48, 32)).save(folder / f"good{marker}name.jpg", format="JPEG")
        (folder / f"bad{marker}name.jpg").write_bytes(b"this is not a photo\n")
        return str(folder / f"good{marker}name.jpg")

    return build


def photo_folder(count: int) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        from hostile import picture

        for i in range(count):
            picture(500 + i, (160, 120)).save(folder / f"p{i:05d}.jpg", quality=90)
        return str(folder / f"p{count - 1:05d}.jpg")

    return build


def swap_for_fifos(folder: Path, library: Path) -> Callable[[float], bool]:
    """Once the first batch is committed, replace the second half of the files (by name: the scan order)
    with FIFOs of the same names: files the scan saw as regular files that are pipes when read."""
    from glimpse.catalog import CATALOG_FILENAME

    swapped: list[str] = []

    def poll(elapsed: float) -> bool:
        if not swapped and last_change_id(library / CATALOG_FILENAME) > 0:
            files = image_files(folder)
            for path in files[len(files) // 2 :]:
                os.unlink(path)
                os.mkfifo(path)
                swapped.append(path)
        return False

    return poll


def issue_entries(big_mb: int) -> list[Hostile]:
    return [
        Hostile("png 10000x1", wide_png(10_000), "stated", "shortest-side resize makes it 2,240,000×224"),
        Hostile("png 100000x1", wide_png(100_000), "stated", "shortest-side resize makes it 22,400,000×224"),
        Hostile("fifo x.jpg", fifo, "stated", "a named pipe: a plain open() blocks forever"),
        Hostile("fifos swapped in mid-run", photo_folder(40), "indexed+failed", "20 of 40 files become FIFOs",
                during=swap_for_fifos),
        Hostile("symlink x.jpg -> /dev/zero", devzero_link, "stated", "endless zeros"),
        Hostile("zeros 50 MB zeros.jpg", zeros("zeros.jpg", 50 * MB), "stated", "the first bytes show it is no image"),
        Hostile(f"zeros {big_mb} MB big.jpg", zeros("big.jpg", big_mb * MB), "stated", "sniff before reading"),
        Hostile("path > PATH_MAX", longer_than_path_max, "stated", "a JPEG below ~4.3 KB of folder names"),
        Hostile("name with ESC", control_name("_\x1b[31m_"), "stated", "terminal escape", raw_in_name="_\x1b[31m_"),
        Hostile("name with CR", control_name("_\rfake_"), "stated", "carriage return", raw_in_name="_\rfake_"),
        Hostile("name with LF", control_name("_\nfake_"), "stated", "line feed", raw_in_name="_\nfake_"),
    ]


def outcome(run: Run) -> tuple[str, str]:
    """What the index run did with its one input: (indexed | failed | skipped | no state | hang | ..., reason)."""
    if run.timed_out:
        return "timeout", f"killed after {run.seconds:.0f} s (a hang, or far too slow)"
    if run.capped:
        return "memory cap", f"killed at RSS > cap after {run.seconds:.0f} s"
    report = run.json()
    if not isinstance(report, dict):
        return "crashed", run.line()
    errors = report.get("errors") or []
    if report.get("added", 0) + report.get("updated", 0) > 0 and not errors:
        return "indexed", ""
    if errors:
        reasons = "; ".join(e.get("reason", "") for e in errors)
        return ("indexed+failed" if report.get("added", 0) else "failed"), reasons
    if report.get("skipped", 0):
        return "skipped", "counted as not an image, no reason"
    return "no state", f"scanned {report.get('scanned')}, nothing reported"


def rss_goal_mb(size: int) -> int | None:
    if size <= MB:
        return 300
    if size < 100 * MB:
        return 1024
    return None


def input_size(path: str) -> int:
    try:
        st = os.stat(path)
    except OSError:
        try:
            return os.lstat(path).st_size
        except OSError:
            return 0
    return st.st_size


def judge(h: Hostile, kind: str, reason: str, run: Run) -> list[str]:
    problems = []
    report = run.json()
    added = report.get("added", 0) if isinstance(report, dict) else 0
    if kind in ("timeout", "memory cap", "crashed"):
        problems.append(f"{kind}: {reason}")
    elif run.rc != 0:
        problems.append(f"index exited {run.rc}: {run.line()}")
    elif h.expect == "indexed" and (kind != "indexed" or added != h.expected_added):
        problems.append(f"expected {h.expected_added} indexed, got {kind} ({added} added) {reason}".strip())
    elif h.expect.startswith("failed:") and (kind != "failed" or h.expect[7:] not in reason):
        problems.append(f"expected failed with {h.expect[7:]!r}, got {kind} {reason}".strip())
    elif h.expect == "ignored" and kind not in ("no state", "skipped"):
        problems.append(f"expected ignored, got {kind} {reason}".strip())
    elif h.expect == "not-indexed" and kind.startswith("indexed"):
        problems.append(f"expected not indexed, got {kind}")
    elif h.expect == "indexed+failed" and kind != "indexed+failed":
        problems.append(f"expected the good files indexed and the rest failed with reasons, got {kind} {reason}")
    elif h.expect == "stated" and kind not in ("indexed", "failed", "indexed+failed"):
        problems.append(f"no state and reason: {kind} ({reason})")
    return problems


def human_output_problems(cli: Cli, library: Path, folder: Path, h: Hostile) -> list[str]:
    """Human (non-JSON) index and search output must not carry the name's raw control characters."""
    assert h.raw_in_name is not None
    problems = []
    for args in (["index", str(folder)], ["search", "photo", "-k", "3"]):
        run = cli.run(library, *args)
        if h.raw_in_name in run.stdout + run.stderr:
            problems.append(f"`{args[0]}` prints the raw name {h.raw_in_name!r}")
        if run.rc != 0:
            problems.append(f"`{args[0]}` exited {run.rc}: {run.line()}")
    return problems


def hostile_section(cli: Cli, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows, failures = [], []
    for n, h in enumerate(corpus_entries(args.quick) + issue_entries(args.big_mb)):
        folder, library = work / f"hostile-{n}", work / f"hostile-library-{n}"
        folder.mkdir()
        path = h.build(folder)
        size = input_size(path)
        poll = h.during(folder, library) if h.during else None
        run = cli.run(library, *command_args("index", folder), timeout=args.hostile_timeout, kill_when=poll)
        kind, reason = outcome(run)
        problems = judge(h, kind, reason, run)
        goal = rss_goal_mb(size)
        if goal is not None and run.peak_rss_mb > goal:
            problems.append(f"peak RSS {run.peak_rss_mb:.0f} MB > goal {goal} MB")
        if h.raw_in_name is not None and not run.timed_out:
            problems += human_output_problems(cli, library, folder, h)
        row = {"input": h.key, "bytes": size, "expect": h.expect, "outcome": kind, "reason": reason,
               "peak_rss_mb": round(run.peak_rss_mb, 1), "rss_cut_short": run.timed_out or run.capped,
               "rss_goal_mb": goal, "seconds": round(run.seconds, 2),
               "problems": problems, "note": h.note}
        rows.append(row)
        failures += [f"{h.key}: {p}" for p in problems]
        print(f"[hostile] {h.key:<34} {kind:<14} {run.peak_rss_mb:7.0f} MB {run.seconds:6.1f} s "
              f"{'OK' if not problems else 'FAIL: ' + '; '.join(problems)}", flush=True)
        remove_tree(folder)
    baseline = next((r["peak_rss_mb"] for r in rows if r["input"] in ("corpus:jpeg", "corpus:empty")), None)
    return {"inputs": rows, "bad_inputs_tried": len(rows), "baseline_rss_mb": baseline, "failures": failures}


def remove_tree(path: Path) -> None:
    """rmtree that also copes with chmod-000 files and FIFOs (fd-based, so paths over PATH_MAX go too)."""
    shutil.rmtree(path, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------------
def print_summary(result: dict[str, Any]) -> None:
    env = result["environment"]
    print("\n" + "=" * 100)
    print(f"glimpse reliability — {env['date']}, {env['cpu']['model']} ({env['cpu']['cores']} cores; "
          f"{', '.join(env['cpu']['flags']) or 'no avx2'}), commit {env['commit']}, model {env['model_backend']}")
    kills = result.get("kills")
    if kills:
        c = kills["checks"]
        by = ", ".join(f"{n} {k}" for n, k in kills["kills_by_command"].items())
        print(f"kill -9            {kills['kills']} kills landed in {len(kills['rounds'])} runs ({by}), "
              f"{kills['kills_survived']} survived")
        print(f"files lost         {len(c['files_lost'])} of {c['on_disk']} images on disk "
              f"(ghosts {len(c['ghosts'])})")
        print(f"wrong vectors      FAISS≠catalog {len(c['faiss_vs_catalog_wrong'])}, "
              f"missing {len(c['faiss_missing'])}, extra {len(c['faiss_extra'])}; "
              f"catalog≠fresh encode {len(c['catalog_vs_fresh_encode_wrong'])} (of {c['vectors']} vectors)")
        print(f"after the kills    status rc {kills['status']['rc']}, integrity {c['integrity_check'][:1]}, "
              f".tmp files {len(c['tmp_files'])}")
    matrix = result.get("matrix")
    if matrix:
        print(f"\ncorruption matrix ({matrix['images']} images): verdict per step "
              "(ok / notice = correct results; error = one clear line; FAIL)")
        steps = list(matrix["cases"][0]["steps"]) if matrix["cases"] else []
        print(f"  {'case':<32}" + "".join(f"{s.replace(' after index', '+'):<9}" for s in steps))
        for case in matrix["cases"]:
            print(f"  {case['case']:<32}" + "".join(f"{v['verdict']:<9}" for v in case["steps"].values()))
    hostile = result.get("hostile")
    if hostile:
        print(f"\nhostile corpus: {hostile['bad_inputs_tried']} inputs, each alone in a fresh `index` child; "
              f"baseline RSS (one small file) {hostile['baseline_rss_mb']} MB; goal ≤ 300 MB for ≤ 1 MB, "
              "≤ 1 GB for < 100 MB")
        print(f"  {'input':<34}{'bytes':>12}  {'outcome':<15}{'peak RSS':>10}{'goal':>8}  verdict")
        for r in hostile["inputs"]:
            goal = f"{r['rss_goal_mb']}" if r["rss_goal_mb"] else "—"
            peak = ("≥" if r["rss_cut_short"] else "") + f"{r['peak_rss_mb']:.0f}"  # killed: it would have grown
            print(f"  {r['input']:<34}{r['bytes']:>12}  {r['outcome']:<15}{peak:>7} MB{goal:>8}  "
                  f"{'ok' if not r['problems'] else 'FAIL'}")
    failures = result["failures"]
    print(f"\n{len(failures)} failure(s)" + (":" if failures else ""))
    for f in failures:
        print(f"  - {f}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small counts (8 kills, 4 steps per matrix case, the good corpus files in one run): "
                        "~8 min on a shared 2-core machine, ~1.3 min less with a built --model")
    p.add_argument("--kills", type=int, help="kill -9s to land (default 40, quick 8)")
    p.add_argument("--count", type=int, help="images in the kill folder at the start (default 200, quick 40)")
    p.add_argument("--matrix-count", type=int, help="images of the corruption matrix (default 120, quick 80; ≥ 80 so "
                                                    "4 KB of garbage fit inside the .faiss vectors)")
    p.add_argument("--big-mb", type=int, help="size of the zeros big.jpg (default 1024, quick 256)")
    p.add_argument("--images", type=Path, help="take photos from this folder (e.g. ../shared/data/coco128/images) "
                                               "instead of generating them")
    p.add_argument("--photo-size", default="320x240", help="size of generated photos, WxH")
    p.add_argument("--model", help="model directory to use (built there first if it does not exist)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="form of the built model")
    p.add_argument("--sections", default="kills,matrix,hostile", help="comma-separated subset to run")
    p.add_argument("--timeout", type=float, default=300, help="seconds any command may take")
    p.add_argument("--hostile-timeout", type=float, help="seconds one hostile input may take (default 60, quick 30)")
    p.add_argument("--rss-cap-mb", type=float, default=3072, help="kill a child above this RSS (protects the machine)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--workdir", type=Path, help="work here instead of a temporary directory (kept)")
    p.add_argument("--json", type=Path, help="also write the full result as JSON here")
    args = p.parse_args(argv)
    defaults = {"kills": (40, 8), "count": (200, 40), "matrix_count": (120, 80), "big_mb": (1024, 256),
                "hostile_timeout": (60, 30)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    w, h = (int(v) for v in args.photo_size.lower().split("x"))
    args.photo_size = (w, h)
    args.sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    return args


@contextlib.contextmanager
def work_directory(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="glimpse-reliability-"))
    try:
        yield path
    finally:
        remove_tree(path)


@dataclass
class Sections:
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def run(self, name: str, section: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        result = section()
        result["seconds"] = round(time.monotonic() - started, 1)
        self.results[name] = result
        self.failures += [f"[{name}] {f}" for f in result["failures"]]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.monotonic()
    with work_directory(args.workdir) as work:
        print(f"[setup] building/loading the model in {work} …", flush=True)
        model = resolve_model(args, work)
        setup_s = round(time.monotonic() - started, 1)
        cli = Cli(model, args.timeout, args.rss_cap_mb)
        truth = Truth(model, work / "scratch-library")
        env = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_facts(),
               "python": platform.python_version(), "commit": git_commit(),
               "model_backend": "onnx" if (model / "spec.json").is_file() else "torch", "model": str(model),
               "model_key": truth.key, "setup_s": setup_s}
        sections = Sections()
        try:
            if "kills" in args.sections:
                sections.run("kills", lambda: kills_section(cli, args, work, truth))
            if "matrix" in args.sections:
                sections.run("matrix", lambda: matrix_section(cli, args, work, truth))
            if "hostile" in args.sections:
                sections.run("hostile", lambda: hostile_section(cli, args, work))
        finally:
            truth.close()
    options = {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v)
               for k, v in vars(args).items()}
    result = {"environment": env, "options": options, **sections.results, "failures": sections.failures,
              "seconds": round(time.monotonic() - started, 1)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    print_summary(result)
    took = ", ".join(f"{n} {r['seconds']:.0f} s" for n, r in sections.results.items())
    print(f"\n(total {result['seconds']:.0f} s: setup {env['setup_s']:.0f} s, {took})")
    return 1 if sections.failures else 0


if __name__ == "__main__":
    sys.exit(main())
