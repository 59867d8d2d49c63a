"""Scale-out commands: ``glimpse index --engine ray`` (delegated here) and ``glimpse bench-scale``.

Top-level imports stay light (typer only): Ray, faiss and numpy load inside the commands.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer

from glimpse.cli import (
    err,
    handles_errors,
    make_progress,
    open_library_ctx,
    options_of,
    out,
    print_errors,
    print_json,
    shown,
)
from glimpse.errors import UserInputError

JOBS_DIRNAME = "distributed"


def index_distributed(ctx: typer.Context, paths: list[Path], *, engine: str, address: str | None, batch_size: int,
                      memory_budget: str | None, as_json: bool, work_dir: Path | None = None,
                      workers: int | None = None, encoders: int | None = None,
                      max_megapixels: float | None = None, with_tags: bool = False) -> None:
    """``glimpse index --engine ray``: encode on Ray into resumable Parquet shards, then load the library.

    ``workers``: decode tasks at once; ``encoders``: encoder actors; ``max_megapixels``: the decode guard
    (default: the local engine's); ``with_tags``: tag every image with the model's CLIP tagger too.
    """
    from glimpse.distributed import RayIndexJob, bulk_load
    from glimpse.images import DEFAULT_MAX_MEGAPIXELS
    from glimpse.vectors.select import parse_bytes, update_policy

    if engine != "ray":
        raise UserInputError(f"--engine {engine!r}: give 'local' (the default) or 'ray'")
    budget = parse_bytes(memory_budget) if memory_budget else None
    _quiet_ray_logs()
    with open_library_ctx(ctx) as lib:
        managed = work_dir is None
        if work_dir is None:
            # One job directory per (inputs, model): re-running the same command resumes it.
            digest = hashlib.blake2b(("\n".join(map(str, paths)) + lib.spec.key).encode(), digest_size=6).hexdigest()
            work_dir = lib.directory / JOBS_DIRNAME / digest
        # A managed directory holding the job of an earlier file list (files were added or removed since)
        # or of another --max-megapixels is replaced: the new job encodes every file of the new list.
        job = RayIndexJob([str(p) for p in paths], lib.model_name, work_dir, batch_size=batch_size,
                          max_megapixels=DEFAULT_MAX_MEGAPIXELS if max_megapixels is None else max_megapixels,
                          tags=with_tags, text_cache_dir=lib.directory,
                          restart=managed)
        if not as_json:
            pending = len(job.pending_shards())
            err.print(f"[bold]Ray job[/] {len(job.paths)} files in {job.shard_count} shards, {pending} to encode"
                      f"{' and tag' if with_tags else ''} ({shown(str(work_dir))}"
                      f"{'; restarted: the files or settings changed since the last run' if job.restarted else ''})")
        report = job.run(address=address, encoders=encoders, workers=workers,
                         progress=make_progress(as_json, "Encoding on Ray"))
        if budget is not None:
            update_policy(lib.catalog, lib.spec.key, memory_budget=budget)
        loaded = bulk_load(lib, work_dir)
    data = {**report.to_dict(), "loaded": loaded}
    if as_json:
        print_json(data)
        return
    rate = report.encoded / report.seconds if report.seconds > 0 else 0.0
    err.print(f"[bold]Indexed on Ray[/] {report.files} files: {report.shards} shards written now, "
              f"{report.shards_done_before} already done; {report.encoded} encoded, {report.failed} failed, "
              f"{report.skipped} not images — {report.seconds:.1f} s ({rate:.1f} images/s)")
    if report.tag_source is not None:
        err.print(f"[bold]Tagged[/] {report.tagged} image(s) ({report.tags} tags)")
    err.print(f"[bold]Loaded[/] {loaded} files into the library {shown(str(lib.directory))}")
    print_errors([(item["path"], item["reason"]) for item in report.errors])


def _quiet_ray_logs() -> None:
    """Keep Ray's INFO chatter (cluster start, execution plans, progress lines) off the terminal.

    The command prints its own progress bar and summary; Ray's warnings and errors still show.
    """
    import logging

    try:
        from ray.data import DataContext  # first: importing Ray Data configures its loggers
        from ray.util.debug import log_once
    except ImportError:  # reported by the job with an install hint
        return
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    DataContext.get_current().enable_progress_bars = False
    log_once("ray_data_progress_manager_disabled")  # its "progress bars disabled" notice: ours replace them


@handles_errors
def bench_scale(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("--n", min=100, help="Number of synthetic 512-d vectors.")] = 100_000,
    dim: Annotated[int, typer.Option("--dim", min=2, help="Vector dimension.")] = 512,
    recall_target: Annotated[float, typer.Option("--recall-target", min=0.01, max=1.0)] = 0.95,
    memory_budget: Annotated[str | None, typer.Option("--memory-budget", help="e.g. 800MB")] = None,
    flat_limit: Annotated[int, typer.Option("--flat-limit", min=1, help="Exact search below this many vectors.")
                          ] = 50_000,
    with_model: Annotated[bool, typer.Option(
        "--with-model", help="Also time a fresh search process that encodes query texts with --model.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Recall / latency / memory of the chosen ANN index vs exact flat and numpy brute force at size N."""
    from glimpse.vectors.bench_scale import measure
    from glimpse.vectors.select import parse_bytes

    model = options_of(ctx).model if with_model else None
    if with_model and not model:
        raise UserInputError("--with-model needs --model NAME|DIR (a model giving --dim vectors)")
    results = measure(n, dim=dim, recall_target=recall_target, model=model, flat_limit=flat_limit,
                      memory_budget=parse_bytes(memory_budget) if memory_budget else None)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    for r in results:
        out.print(f"{r.method:<18} {r.factory:<16} n={r.n:<9} build {r.build_s:7.2f} s  "
                  f"size {r.index_bytes / 1e6:8.1f} MB  p50 {r.p50_ms:7.3f} ms  p99 {r.p99_ms:7.3f} ms  "
                  f"recall@10 {r.recall_at_10:.3f}  {r.params}", markup=False)
        if r.serving:
            out.print(f"{'':<18} serving: {r.serving}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``bench-scale`` (``glimpse bench index-scale`` can call ``bench_scale`` too)."""
    app.command("bench-scale")(bench_scale)
