"""Distributed indexing on Ray Data: list → decode (CPU tasks) → encode (actor pool) → Parquet shards → load.

    report, loaded = index_on_ray(library, ["/data/listing.txt"], address="auto")   # all of it, resumable

    work = RayIndexJob(["/data/listing.txt"], model="openai/clip-vit-base-patch32", work_dir="/nfs/job1")
    report = work.run(address="auto")          # resumable: finished shards are skipped on a re-run
    bulk_load(library, "/nfs/job1")            # into the library's catalog, then its FAISS or Milvus store

Inputs are folders (scanned like ``glimpse index``), image files, list files (one local path or fsspec URL
per line, ``#`` comments), or fsspec URLs. The input list is cut into shards of ``shard_size`` files in
a fixed order; each finished shard is written as ``shard-NNNNN.parquet`` (id, path, size, mtime_ns,
hash, width, height, format, state, error, embedding, tags, tag_scores) and then marked by
``shard-NNNNN.done``, so a killed job restarts at the first unmarked shard. Decoding reuses
``pipeline.prepare`` (same hash, same decoder, same preprocessing as the single-process path); each encoder
actor loads the model once (``registry.load_encoder``) and asks for a GPU when the cluster has one.

With ``tags=True`` each encoder actor also builds the CLIP tagger of the model once (``ClipTagger``, the
vocabulary resolved on the driver) and tags every image from its fresh embedding, exactly as
``tagging.library_tags.tag_library`` does from the stored vectors after a local ``glimpse index --tags``;
``bulk_load`` stores those tags in the catalog under the same source, before the vector store is synced,
so a Milvus store receives them with the vectors. A shard written without tags (or with another
vocabulary) counts as not done for a job that asks for tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.catalog import STATE_OK, FileUpdate
from glimpse.errors import GlimpseError, UserInputError
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, IMAGE_EXTENSIONS, check_max_megapixels

if TYPE_CHECKING:
    from glimpse.library import Library
    from glimpse.pipeline import Progress
    from glimpse.tagging.base import Vocabulary

JOB_FILENAME = "job.json"
JOBS_DIRNAME = "distributed"  # managed job directories live in <library>/distributed/<digest>
DEFAULT_SHARD_SIZE = 1000
LOAD_BATCH = 1000
DECODE_TASKS_PER_WORKER = 16  # decode tasks a Ray worker process runs before it is replaced


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
    from glimpse.catalog import is_video_format
    from glimpse.pipeline import Task, prepare
    from glimpse.registry import load_spec

    pre = load_spec(model).preprocess
    n = len(batch["path"])
    pixels = np.zeros((n, *pre.input_shape), dtype=np.float32)
    cols: dict[str, list[Any]] = {k: [] for k in ("size", "mtime_ns", "hash", "width", "height", "format", "state",
                                                  "error", "ok")}
    for i, path in enumerate(batch["path"].tolist()):
        tmp = None
        try:
            local, size, mtime_ns, tmp = _read_local(path)
            prepared = prepare(Task(local, size, mtime_ns, None), pre, max_megapixels=max_megapixels)
            facts = prepared.update
            if prepared.frame_pixels is not None or is_video_format(facts.format):
                # A video is many items; the job's rows are one vector per file.
                facts = replace(facts, state="error", error="videos are not indexed by distributed jobs yet; "
                                "index them with `glimpse index`", format=None)
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
    """Ray Data actor stage: one model per actor; adds ``embedding`` float32[n, d] (zeros for failures).

    With a ``vocab`` it also adds ``tags``: per row a JSON text ``[[tag, score], ...]`` (best first; ``[]``
    for failures) from the CLIP tagger of the same model. JSON keeps the ragged lists one plain string
    column through Ray Data's numpy batches.
    """

    def __init__(self, model: str, device: str, vocab: Vocabulary | None = None,
                 text_cache_dir: str | None = None) -> None:
        from glimpse.registry import load_encoder

        self.encoder = load_encoder(model, device=device)
        self.tagger = None
        if vocab is not None:
            from glimpse.tagging.clip_tagger import ClipTagger
            from glimpse.zeroshot import text_cache_for

            # The tag prompts are embedded once per actor. The library's text cache is shared when this
            # node sees the library directory (one machine, shared storage); elsewhere it stays in memory.
            cache_dir = text_cache_dir if text_cache_dir and os.path.isdir(text_cache_dir) else None
            self.tagger = ClipTagger(self.encoder, vocab, cache=text_cache_for(cache_dir, self.encoder.key))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray(batch["ok"], dtype=bool)
        embedding = np.zeros((len(ok), self.encoder.dim), dtype=np.float32)
        if ok.any():
            embedding[ok] = self.encoder.encode_pixels(batch["pixels"][ok])
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["embedding"] = embedding
        if self.tagger is not None:
            out["tags"] = np.asarray(_tag_texts(self.tagger, embedding, ok), dtype=object)
        return out


def _tag_texts(tagger: Any, embedding: np.ndarray, ok: np.ndarray) -> list[str]:
    """JSON ``[[tag, score], ...]`` per row of ``float32[n, d]`` embeddings; ``"[]"`` where ``ok`` is False."""
    from glimpse.tagging.base import select

    texts = ["[]"] * len(ok)
    if ok.any():
        # The same scoring and selection as tag_library (default thresholds, nothing excluded).
        chosen = select(tagger.score_vectors(embedding[ok]), tagger.vocab)
        for row, tags in zip(np.flatnonzero(ok).tolist(), chosen, strict=True):
            texts[row] = json.dumps([[t.name, t.score] for t in tags], ensure_ascii=False)
    return texts


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
    tag_source: str | None = None  # set when the job tags: the catalog source of its tags
    tagged: int = 0  # images tagged in the shards written by this run
    tags: int = 0  # tags those images got

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; tag counts nest under ``tags`` like the local ``index --tags`` report."""
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        for key in ("tag_source", "tagged", "tags"):
            del data[key]
        if self.tag_source is not None:
            data["tags"] = {"source": self.tag_source, "tagged": self.tagged, "tags": self.tags}
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
        ("tags", pa.list_(pa.string())), ("tag_scores", pa.list_(pa.float32())),
    ])


def _read_marker(marker: Path) -> dict[str, Any]:
    """A shard's done-marker; ``{}`` when it is unreadable (the shard is then redone)."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# "module.SomeError: message" lines of the remote tracebacks Ray puts in its exceptions' text
_REMOTE_ERROR = re.compile(r"^\s*((?:\w+\.)*\w+(?:Error|Exception)): (.+)$", re.MULTILINE)


def _job_failure(exc: BaseException) -> DistributedError:
    """A task or actor failure as one line: the first glimpse error in Ray's report, else its last error."""
    text = str(exc)
    found = _REMOTE_ERROR.findall(text)
    ours = [message for name, message in found if name.startswith("glimpse.")]
    if ours:
        detail = ours[0]
    elif found:
        detail = f"{found[-1][0].rsplit('.', 1)[-1]}: {found[-1][1]}"
    else:
        detail = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return DistributedError(f"the Ray job failed on a worker: {detail} (the finished shards are kept: run the "
                            "same command again to resume)")


def check_address(address: str | None) -> None:
    """Fail fast, with a clear error, on a Ray address that cannot work.

    ``None``, ``auto`` and ``local`` are left to Ray. ``HOST:PORT`` and ``ray://HOST:PORT`` must parse and
    accept a TCP connection: Ray itself retries an unreachable head node for many minutes before failing.
    """
    if address is None or address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "/" in target:
        raise UserInputError(f"--address {address!r}: give auto (the running cluster), HOST:PORT of the head "
                             "node (its GCS port, 6379 by default) or ray://HOST:PORT (Ray Client)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise DistributedError(
            f"cannot reach the Ray cluster at {address} ({reason.lower()}); check that the head node runs "
            "(`ray start --head`) and the port, or leave --address out to run on a local Ray"
        ) from exc


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (None: ``$RAY_ADDRESS`` or a new local Ray) unless already joined."""
    try:
        import ray
        import ray.data  # the part of Ray the job needs: ray[data]
    except ImportError as exc:
        raise DistributedError(f"--engine ray needs Ray Data ({exc}); install it with: pip install 'glimpse[ray]'"
                               ) from exc
    if ray.is_initialized():
        return
    check_address(address or os.environ.get("RAY_ADDRESS"))
    try:
        # Ray's INFO lines (cluster started, dashboard) are noise next to the job's own report.
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ("start one with `ray start --head`, or leave --address out to run on a local Ray"
                if address == "auto" else "check the address, or leave --address out to run on a local Ray")
        raise DistributedError(f"cannot join the Ray cluster at {address or 'a new local Ray'}: {detail}; {hint}"
                               ) from exc


class RayIndexJob:
    """One resumable distributed indexing job writing into ``work_dir`` (shared storage on a cluster)."""

    def __init__(self, sources: Sequence[str], model: str, work_dir: str | os.PathLike[str], *,
                 shard_size: int = DEFAULT_SHARD_SIZE, batch_size: int = 32,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, tags: bool = False,
                 text_cache_dir: str | os.PathLike[str] | None = None, restart: bool = False) -> None:
        """``tags``: also tag each image with the model's CLIP tagger (vocabulary: ``load_vocabulary()``).
        ``text_cache_dir``: a library directory whose text cache holds the tag prompt embeddings.
        ``restart``: when ``work_dir`` holds another job (other inputs, model, shard size or megapixel limit),
        delete its shards and start this one (for job directories glimpse manages itself); otherwise that is
        an error.
        """
        from glimpse.registry import load_spec

        if shard_size < 1 or batch_size < 1:
            raise UserInputError(f"shard size and batch size must be at least 1, got {shard_size} and {batch_size}")
        check_max_megapixels(max_megapixels)  # the decode guard's own check, here before any task starts
        self.paths = list_inputs(sources)
        if not self.paths:
            raise UserInputError(f"nothing to index in {', '.join(map(str, sources))}")
        self.model = model
        self.spec = load_spec(model)
        self.work_dir = Path(work_dir)
        self.shard_size = shard_size
        self.batch_size = batch_size
        self.max_megapixels = max_megapixels
        self.text_cache_dir = str(text_cache_dir) if text_cache_dir is not None else None
        self.vocab: Vocabulary | None = None
        self.tag_source: str | None = None
        self.tag_key: str | None = None
        if tags:
            from glimpse.tagging.vocab import load_vocabulary

            # Resolved here, on the driver ($GLIMPSE_TAG_VOCABULARY may be set only here), and shipped.
            self.vocab = load_vocabulary()
            self.tag_source = f"clip:{self.spec.key}"  # ClipTagger.source: the same rows as a local run
            digest = hashlib.blake2b(json.dumps([self.tag_source, self.vocab.names]).encode(), digest_size=8)
            digest.update(self.vocab.thresholds.tobytes())
            self.tag_key = digest.hexdigest()
        self.restarted = False
        self._check_job_file(restart)

    def _clear(self) -> None:
        for pattern in (JOB_FILENAME, "shard-*.parquet", "shard-*.done", "shard-*.tmp"):
            for path in self.work_dir.glob(pattern):
                path.unlink(missing_ok=True)

    def _check_job_file(self, restart: bool) -> None:
        digest = hashlib.blake2b("\n".join(self.paths).encode("utf-8", "surrogateescape"), digest_size=16)
        job = {"model_key": self.spec.key, "model": self.model, "files": len(self.paths),
               "inputs": digest.hexdigest(), "shard_size": self.shard_size, "dim": self.spec.dim,
               "max_megapixels": self.max_megapixels}
        identity = ("model_key", "inputs", "shard_size", "max_megapixels")
        path = self.work_dir / JOB_FILENAME
        if path.exists():
            # Jobs written before max_megapixels was recorded always used the default.
            old = {"max_megapixels": DEFAULT_MAX_MEGAPIXELS, **json.loads(path.read_text(encoding="utf-8"))}
            if {k: old.get(k) for k in identity} == {k: job[k] for k in identity}:
                return
            if not restart:
                raise DistributedError(
                    f"{self.work_dir} holds another job (model {old.get('model')}, {old.get('files')} files, "
                    f"{old.get('max_megapixels'):g} MP limit); give an empty work directory, or the same inputs, "
                    "model and --max-megapixels to resume that job"
                )
            self._clear()
            self.restarted = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")

    @property
    def shard_count(self) -> int:
        return -(-len(self.paths) // self.shard_size)

    def _is_done(self, shard: int) -> bool:
        marker = _shard_paths(self.work_dir, shard)[1]
        if not marker.exists():
            return False
        # A job that tags needs shards tagged with its own tagger and vocabulary.
        return self.tag_key is None or _read_marker(marker).get("tag_key") == self.tag_key

    def pending_shards(self) -> list[int]:
        """Shard numbers still to encode (no done-marker, or not tagged the way this job tags)."""
        return [s for s in range(self.shard_count) if not self._is_done(s)]

    def run(self, *, address: str | None = None, encoders: int | None = None, workers: int | None = None,
            device: str | None = None, progress: Progress | None = None) -> RayIndexReport:
        """Run (or resume) the job on Ray.

        ``address``: None joins an initialised Ray (else ``$RAY_ADDRESS`` or a new local one), ``auto`` the
        running cluster, ``HOST:PORT`` / ``ray://HOST:PORT`` a given one. ``encoders``: encoder actors
        (default: one per GPU, else half the CPUs). ``workers``: decode tasks running at once (default: as
        many as Ray Data schedules on the free CPUs). ``progress`` counts files as they come back encoded.
        """
        for value, name in ((encoders, "--encoders"), (workers, "--workers")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UserInputError(f"{name} must be a positive whole number, got {value!r}")
        started = time.perf_counter()
        report = RayIndexReport(files=len(self.paths), work_dir=str(self.work_dir), tag_source=self.tag_source)
        pending = self.pending_shards()
        report.shards_done_before = self.shard_count - len(pending)
        connect(address)
        import ray

        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        device = device or ("cuda" if gpus else "cpu")
        pool = encoders or (gpus if gpus else max(1, cpus // 2))
        # A pool bigger than the cluster never starts (Ray Data waits for the resources forever).
        if gpus and pool > gpus:
            raise UserInputError(f"--encoders {pool}: the Ray cluster has {gpus} GPU(s), one per encoder actor")
        if not gpus and cpus > 1 and pool > cpus - 1:
            raise UserInputError(f"--encoders {pool}: the Ray cluster has {cpus} CPUs and no GPU; give at most "
                                 f"{cpus - 1} encoder(s), so that a CPU is left to decode images")
        if pending:
            self._run_stages(pending, pool, workers, device, 1 if gpus else 0, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _run_stages(self, pending: list[int], pool: int, workers: int | None, device: str, gpus_per_actor: int,
                    report: RayIndexReport, progress: Progress | None) -> None:
        import ray.data

        rows = [{"row": s * self.shard_size + i, "shard": s, "path": p}
                for s in pending
                for i, p in enumerate(self.paths[s * self.shard_size : (s + 1) * self.shard_size])]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // self.batch_size, 64)))
        decode_options: dict[str, Any] = {}
        if workers is not None:
            decode_options["compute"] = ray.data.TaskPoolStrategy(size=workers)
        # max_calls recycles decode worker processes (a decoded 100-megapixel image leaves the allocator's
        # arenas high). Being a remote argument the encoder stage lacks, it also keeps Ray Data from fusing
        # the decode tasks into CPU encoder actors, so decoding runs in CPU tasks of its own, on every free
        # CPU, in parallel with the encoders.
        ds = ds.map_batches(decode_batch, fn_kwargs={"model": self.model, "max_megapixels": self.max_megapixels},
                            batch_size=self.batch_size, batch_format="numpy", max_calls=DECODE_TASKS_PER_WORKER,
                            **decode_options)
        ds = ds.map_batches(EncodeActor, fn_constructor_kwargs={"model": self.model, "device": device,
                                                               "vocab": self.vocab,
                                                               "text_cache_dir": self.text_cache_dir},
                            batch_size=self.batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=pool), num_gpus=gpus_per_actor)
        expected = {s: len(self.paths[s * self.shard_size : (s + 1) * self.shard_size]) for s in pending}
        buffers: dict[int, list[dict[str, Any]]] = {s: [] for s in pending}
        if progress is not None:
            progress.start(len(rows))
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for i in range(len(batch["row"])):
                    row = {k: batch[k][i] for k in batch}
                    shard = int(row["shard"])
                    buffers[shard].append(row)
                    if len(buffers[shard]) == expected[shard]:
                        self._write_shard(shard, buffers.pop(shard), report)
                if progress is not None:
                    progress.advance(len(batch["row"]))
        except ray.exceptions.RayError as exc:
            raise _job_failure(exc) from exc
        finally:
            if progress is not None:
                progress.finish()

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
        }
        # [[tag, score], ...] per row, best first (empty when the job does not tag or the file failed)
        tagged = [json.loads(str(r["tags"])) if "tags" in r else [] for r in rows]
        columns["tags"] = [[name for name, _ in tags] for tags in tagged]
        columns["tag_scores"] = [[float(score) for _, score in tags] for tags in tagged]
        table = pa.Table.from_pydict(columns, schema=_schema(self.spec.dim))
        target, marker = _shard_paths(self.work_dir, shard)
        tmp = target.with_name(target.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        marker.write_text(json.dumps({"rows": len(rows), "at": time.time(), "tag_source": self.tag_source,
                                      "tag_key": self.tag_key}) + "\n", encoding="utf-8")
        report.shards += 1
        report.encoded += sum(ok)
        if self.tag_source is not None:
            report.tagged += sum(ok)
            report.tags += sum(len(tags) for tags in tagged)
        for r in rows:
            if r["state"] == "error":
                report.failed += 1
                report.errors.append({"path": str(r["path"]), "reason": str(r["error"])})
            elif r["state"] == "skipped":
                report.skipped += 1


def bulk_load(library: Library, work_dir: str | os.PathLike[str]) -> int:
    """Load every finished shard of ``work_dir`` into ``library`` (catalog, then its vector store).

    Shards written with tags also store them in the catalog (source ``clip:<model key>``, like a local
    ``glimpse index --tags``) before the vector store catches up, so a Milvus store gets them with the
    vectors. Returns the number of files written. Idempotent: loading twice rewrites the same rows.
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
    # The writer's context registers the model, and on the way out catches the vector store up and saves it.
    with library.writing(registers_model=True) as catalog:
        for marker in sorted(work_dir.glob("shard-*.done")):
            tag_source = _read_marker(marker).get("tag_source")
            table = pq.read_table(marker.with_suffix(".parquet"))
            for start in range(0, table.num_rows, LOAD_BATCH):
                chunk = table.slice(start, LOAD_BATCH).to_pylist()
                updates = [FileUpdate(
                    path=os.fsdecode(r["path"].encode("utf-8", "surrogateescape")), size=r["size"],
                    mtime_ns=r["mtime_ns"], state=r["state"], hash=r["hash"], width=r["width"], height=r["height"],
                    format=r["format"], error=r["error"],
                    vector=np.asarray(r["embedding"], dtype=np.float32) if r["state"] == STATE_OK else None,
                ) for r in chunk]
                ids = catalog.apply(updates, spec.key)
                if tag_source:
                    catalog.put_tags(
                        [(file_id, r["hash"], list(zip(r["tags"], r["tag_scores"], strict=True)))
                         for file_id, r in zip(ids, chunk, strict=True) if r["state"] == STATE_OK], tag_source)
                loaded += len(updates)
    return loaded


def quiet_ray_logs() -> None:
    """Keep Ray's INFO chatter (cluster start, execution plans, progress lines) off the terminal.

    The caller shows its own progress and summary; Ray's warnings and errors still show.
    """
    try:
        from ray.data import DataContext  # first: importing Ray Data configures its loggers
        from ray.util.debug import log_once
    except ImportError:  # reported by the job with an install hint
        return
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # its "progress bars disabled" notice: ours replace them


def managed_work_dir(library: Library, sources: Sequence[str]) -> Path:
    """The job directory glimpse picks under the library: one per (inputs, model), so that re-running the
    same command resumes the same job."""
    digest = hashlib.blake2b(("\n".join(map(str, sources)) + library.spec.key).encode(), digest_size=6).hexdigest()
    return library.directory / JOBS_DIRNAME / digest


def index_on_ray(library: Library, sources: Sequence[str | os.PathLike[str]], *, address: str | None = None,
                 batch_size: int = 32, workers: int | None = None, encoders: int | None = None,
                 max_megapixels: float | None = None, with_tags: bool = False, memory_budget: int | None = None,
                 progress: Progress | None = None, work_dir: str | os.PathLike[str] | None = None,
                 on_job: Callable[[RayIndexJob], None] | None = None) -> tuple[RayIndexReport, int]:
    """Index ``sources`` into ``library`` on Ray: encode into resumable Parquet shards, then bulk-load them.

    ``work_dir`` None: a managed directory under the library (:func:`managed_work_dir`); one holding the job
    of an earlier file list (files were added or removed since) or of another ``max_megapixels`` is replaced,
    so the new job encodes every file of the new list. A given ``work_dir`` holding another job is an error.
    ``workers``: decode tasks at once; ``encoders``: encoder actors; ``max_megapixels``: the decode guard
    (default: the local engine's); ``with_tags``: tag every image with the model's CLIP tagger too;
    ``memory_budget`` (bytes): recorded as the library's index policy before the load, as a local
    ``index --memory-budget`` does. ``on_job`` is called with the job before it runs (to show what it will
    do). Returns the run's report and the number of files loaded into the library.
    """
    from glimpse.vectors.select import update_policy

    paths = [str(p) for p in sources]
    managed = work_dir is None
    target = managed_work_dir(library, paths) if work_dir is None else Path(work_dir)
    quiet_ray_logs()
    job = RayIndexJob(paths, library.model_name, target, batch_size=batch_size,
                      max_megapixels=DEFAULT_MAX_MEGAPIXELS if max_megapixels is None else max_megapixels,
                      tags=with_tags, text_cache_dir=library.directory, restart=managed)
    if on_job is not None:
        on_job(job)
    report = job.run(address=address, encoders=encoders, workers=workers, progress=progress)
    if memory_budget is not None:
        update_policy(library.catalog, library.spec.key, memory_budget=memory_budget)
    return report, bulk_load(library, target)
