"""Distributed indexing on Ray Data: list → decode (CPU tasks) → encode (actor pool) → Parquet shards → load.

    work = RayIndexJob(["/data/listing.txt"], model="openai/clip-vit-base-patch32", work_dir="/nfs/job1")
    report = work.run(address="auto")          # resumable: finished shards are skipped on a re-run
    bulk_load(library, "/nfs/job1")            # into the library's catalog, then its FAISS or Milvus store

Inputs are folders (scanned like ``glimpse index``), image files, list files (one local path or fsspec URL
per line, ``#`` comments), or fsspec URLs. The input list is cut into shards of ``shard_size`` files in
a fixed order; each finished shard is written as ``shard-NNNNN.parquet`` (id, path, size, mtime_ns,
hash, width, height, format, state, error, embedding, tags) and then marked by ``shard-NNNNN.done``,
so a killed job restarts at the first unmarked shard. Decoding reuses ``pipeline.prepare`` (same hash,
same decoder, same preprocessing as the single-process path); each encoder actor loads the model once
(``registry.load_encoder``) and asks for a GPU when the cluster has one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.catalog import STATE_OK, FileUpdate
from glimpse.errors import GlimpseError, UserInputError
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from glimpse.library import Library

JOB_FILENAME = "job.json"
DEFAULT_SHARD_SIZE = 1000
LOAD_BATCH = 1000


class DistributedError(GlimpseError):
    """A distributed indexing job cannot run or resume."""


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def list_inputs(sources: Sequence[str]) -> list[str]:
    """Expand folders, list files and URLs into the ordered, de-duplicated list of files to index."""
    from glimpse.pipeline import scan

    out: list[str] = []
    for raw in sources:
        source = str(raw)
        if _is_url(source):
            out.append(source)
            continue
        path = os.path.realpath(os.path.expanduser(source.removeprefix("file://")))
        if os.path.isdir(path):
            out += [found.path for found in scan([path])]
        elif not os.path.isfile(path):
            raise UserInputError(f"{source} does not exist; give a folder, an image, a list file or a URL")
        elif os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
            out.append(path)
        else:  # a list file: one path or URL per line
            base = os.path.dirname(path)
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    entry = line.strip()
                    if entry and not entry.startswith("#"):
                        out.append(entry if _is_url(entry) else os.path.realpath(os.path.join(base, entry)))
    return list(dict.fromkeys(out))


# -- the Ray stages (module-level so Ray can ship them to workers) --------------------------------------
def _read_local(path: str) -> tuple[str, int, int, str | None]:
    """``(local path, size, mtime_ns, temp file to delete)``; URLs are fetched through fsspec."""
    if not _is_url(path):
        st = os.stat(path)
        return path, st.st_size, st.st_mtime_ns, None
    import fsspec

    with fsspec.open(path, "rb") as fh:
        data = fh.read()
    fd, tmp = tempfile.mkstemp(prefix="glimpse-", suffix=os.path.splitext(path)[1])
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return tmp, len(data), 0, tmp


def decode_batch(batch: dict[str, np.ndarray], model: str, max_megapixels: float) -> dict[str, np.ndarray]:
    """Ray Data CPU stage: rows ``{row, shard, path}`` → file facts + preprocessed ``pixels`` float32[n,3,H,W]."""
    from glimpse.pipeline import Task, prepare
    from glimpse.registry import load_spec

    pre = load_spec(model).preprocess
    n = len(batch["path"])
    pixels = np.zeros((n, 3, pre.height, pre.width), dtype=np.float32)
    cols: dict[str, list[Any]] = {k: [] for k in ("size", "mtime_ns", "hash", "width", "height", "format", "state",
                                                  "error", "ok")}
    for i, path in enumerate(batch["path"].tolist()):
        tmp = None
        try:
            local, size, mtime_ns, tmp = _read_local(path)
            prepared = prepare(Task(local, size, mtime_ns, None), pre, max_megapixels=max_megapixels)
            facts = prepared.update
            values = (size, mtime_ns, facts.hash, facts.width, facts.height, facts.format, facts.state, facts.error,
                      prepared.pixels is not None)
            if prepared.pixels is not None:
                pixels[i] = prepared.pixels
        except OSError as exc:  # a URL that cannot be fetched (local files are handled by prepare)
            values = (0, 0, None, None, None, None, "error",
                      f"cannot read file: {(exc.strerror or str(exc)).lower()}", False)
        finally:
            if tmp:
                os.unlink(tmp)
        for key, value in zip(cols, values, strict=True):
            cols[key].append(value)
    out = {k: np.asarray(batch[k]) for k in ("row", "shard", "path")}
    out.update({k: np.asarray(v, dtype=object if k in ("hash", "format", "state", "error") else None)
                for k, v in cols.items() if k not in ("width", "height")})
    out["width"] = np.asarray([w or 0 for w in cols["width"]], dtype=np.int64)
    out["height"] = np.asarray([h or 0 for h in cols["height"]], dtype=np.int64)
    out["pixels"] = pixels
    return out


class EncodeActor:
    """Ray Data actor stage: one model per actor; adds ``embedding`` float32[n, d] (zeros for failures)."""

    def __init__(self, model: str, device: str) -> None:
        from glimpse.registry import load_encoder

        self.encoder = load_encoder(model, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], dtype=bool)
        embedding = np.zeros((len(ok), self.encoder.dim), dtype=np.float32)
        if ok.any():
            embedding[ok] = self.encoder.encode_pixels(batch["pixels"][ok])
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["embedding"] = embedding
        return out


# -- the job ------------------------------------------------------------------------------------------
@dataclass
class RayIndexReport:
    """What a run did: shards written now / found done, files per state, seconds."""

    files: int = 0
    shards: int = 0
    shards_done_before: int = 0
    encoded: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    work_dir: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data


def _text(value: Any) -> str | None:
    """A string column value: Ray's numpy batches turn missing strings into None or NaN."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return str(value)


def _shard_paths(work_dir: Path, shard: int) -> tuple[Path, Path]:
    return work_dir / f"shard-{shard:05d}.parquet", work_dir / f"shard-{shard:05d}.done"


def _schema(dim: int) -> Any:
    import pyarrow as pa

    return pa.schema([
        ("id", pa.int64()), ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
        ("hash", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()),
        ("state", pa.string()), ("error", pa.string()), ("embedding", pa.list_(pa.float32(), dim)),
        ("tags", pa.list_(pa.string())),
    ])


class RayIndexJob:
    """One resumable distributed indexing job writing into ``work_dir`` (shared storage on a cluster)."""

    def __init__(self, sources: Sequence[str], model: str, work_dir: str | os.PathLike[str], *,
                 shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 32,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> None:
        from glimpse.registry import load_spec

        if shard_size < 1 or batch_size < 1:
            raise UserInputError(f"shard size and batch size must be at least 1, got {shard_size} and {batch_size}")
        self.paths = list_inputs(sources)
        if not self.paths:
            raise UserInputError(f"nothing to index in {', '.join(map(str, sources))}")
        self.model = model
        self.spec = load_spec(model)
        self.work_dir = Path(work_dir)
        self.shard_size = shard_size
        self.batch_size = batch_size
        self.max_megapixels = max_megapixels
        self._check_job_file()

    def _check_job_file(self) -> None:
        digest = hashlib.blake2b("\n".join(self.paths).encode("utf-8", "surrogateescape"), digest_size=16)
        job = {"model_key": self.spec.key, "model": self.model, "files": len(self.paths),
               "inputs": digest.hexdigest(), "shard_size": self.shard_size, "dim": self.spec.dim}
        path = self.work_dir / JOB_FILENAME
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if {k: old.get(k) for k in ("model_key", "inputs", "shard_size")} != \
                    {k: job[k] for k in ("model_key", "inputs", "shard_size")}:
                raise DistributedError(
                    f"{self.work_dir} holds another job (model {old.get('model')}, {old.get('files')} files); "
                    "give an empty --work-dir, or the same inputs and model to resume that job"
                )
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")

    @property
    def shard_count(self) -> int:
        return -(-len(self.paths) // self.shard_size)

    def pending_shards(self) -> list[int]:
        return [s for s in range(self.shard_count) if not _shard_paths(self.work_dir, s)[1].exists()]

    def run(self, *, address: str | None = None, encoders: int | None = None, device: str | None = None
            ) -> RayIndexReport:
        """Run (or resume) the job on Ray: ``address`` None joins an initialised Ray or starts a local one."""
        import ray

        started = time.perf_counter()
        report = RayIndexReport(files=len(self.paths), work_dir=str(self.work_dir))
        pending = self.pending_shards()
        report.shards_done_before = self.shard_count - len(pending)
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        device = device or ("cuda" if gpus else "cpu")
        if pending:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            pool = encoders or (gpus if gpus else max(1, cpus // 2))
            self._run_stages(pending, pool, device, 1 if gpus else 0, report)
        report.seconds = time.perf_counter() - started
        return report

    def _run_stages(self, pending: list[int], pool: int, device: str, gpus_per_actor: int,
                    report: RayIndexReport) -> None:
        import ray.data

        rows = [{"row": s * self.shard_size + i, "shard": s, "path": p}
                for s in pending
                for i, p in enumerate(self.paths[s * self.shard_size : (s + 1) * self.shard_size])]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // self.batch_size, 64)))
        ds = ds.map_batches(decode_batch, fn_kwargs={"model": self.model, "max_megapixels": self.max_megapixels},
                            batch_size=self.batch_size, batch_format="numpy")
        ds = ds.map_batches(EncodeActor, fn_constructor_kwargs={"model": self.model, "device": device},
                            batch_size=self.batch_size, batch_format="numpy", concurrency=pool,
                            num_gpus=gpus_per_actor)
        expected = {s: len(self.paths[s * self.shard_size : (s + 1) * self.shard_size]) for s in pending}
        buffers: dict[int, list[dict[str, Any]]] = {s: [] for s in pending}
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["row"])):
                row = {k: batch[k][i] for k in batch}
                shard = int(row["shard"])
                buffers[shard].append(row)
                if len(buffers[shard]) == expected[shard]:
                    self._write_shard(shard, buffers.pop(shard), report)

    def _write_shard(self, shard: int, rows: list[dict[str, Any]], report: RayIndexReport) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows.sort(key=lambda r: int(r["row"]))
        ok = [bool(r["ok"]) for r in rows]
        columns = {
            "id": [int(r["row"]) for r in rows],
            "path": [os.fsencode(str(r["path"])).decode("utf-8", "surrogateescape") for r in rows],
            "size": [int(r["size"]) for r in rows],
            "mtime_ns": [int(r["mtime_ns"]) for r in rows],
            "hash": [_text(r["hash"]) for r in rows],
            "width": [int(r["width"]) or None for r in rows],
            "height": [int(r["height"]) or None for r in rows],
            "format": [_text(r["format"]) for r in rows],
            "state": [str(r["state"]) for r in rows],
            "error": [_text(r["error"]) for r in rows],
            "embedding": [r["embedding"].tolist() if good else None for r, good in zip(rows, ok, strict=True)],
            "tags": [[] for _ in rows],  # filled by taggers that run as a later stage
        }
        table = pa.Table.from_pydict(columns, schema=_schema(self.spec.dim))
        target, marker = _shard_paths(self.work_dir, shard)
        tmp = target.with_name(target.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        marker.write_text(json.dumps({"rows": len(rows), "at": time.time()}) + "\n", encoding="utf-8")
        report.shards += 1
        report.encoded += sum(ok)
        for r in rows:
            if r["state"] == "error":
                report.failed += 1
                report.errors.append({"path": str(r["path"]), "reason": str(r["error"])})
            elif r["state"] == "skipped":
                report.skipped += 1


def bulk_load(library: Library, work_dir: str | os.PathLike[str]) -> int:
    """Load every finished shard of ``work_dir`` into ``library`` (catalog, then its vector store).

    Returns the number of files written. Idempotent: loading twice rewrites the same rows.
    """
    import pyarrow.parquet as pq

    work_dir = Path(work_dir)
    job_path = work_dir / JOB_FILENAME
    if not job_path.exists():
        raise UserInputError(f"{work_dir} is not a glimpse distributed job directory (no {JOB_FILENAME})")
    job = json.loads(job_path.read_text(encoding="utf-8"))
    spec = library.spec
    if job["model_key"] != spec.key:
        raise UserInputError(
            f"the shards in {work_dir} were encoded with {job['model']} (key {job['model_key']}), but the library "
            f"uses {spec.name} (key {spec.key}); open the library with --model {job['model']}"
        )
    loaded = 0
    with library._writer_lock():
        library.catalog.register_model(spec.key, spec.name, spec.dim, spec.to_dict())
        if library.catalog.get_meta("default_model") is None:
            library.catalog.set_meta("default_model", library.model_name)
        for marker in sorted(work_dir.glob("shard-*.done")):
            table = pq.read_table(marker.with_suffix(".parquet"))
            for start in range(0, table.num_rows, LOAD_BATCH):
                chunk = table.slice(start, LOAD_BATCH).to_pylist()
                updates = [FileUpdate(
                    path=os.fsdecode(r["path"].encode("utf-8", "surrogateescape")), size=r["size"],
                    mtime_ns=r["mtime_ns"], state=r["state"], hash=r["hash"], width=r["width"], height=r["height"],
                    format=r["format"], error=r["error"],
                    vector=np.asarray(r["embedding"], dtype=np.float32) if r["state"] == STATE_OK else None,
                ) for r in chunk]
                library.catalog.apply(updates, spec.key)
                loaded += len(updates)
        library._vector_index(save=True)
    return loaded
