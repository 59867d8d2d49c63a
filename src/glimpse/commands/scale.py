"""Scale-out: the printing half of ``glimpse index --engine ray``, and ``glimpse bench-scale``.

The Ray job itself (job directory, restarts, index policy, bulk load, Ray's logs) is
:func:`glimpse.distributed.index_on_ray`; here it is only called and its report printed. Top-level imports
stay light (typer only): Ray, faiss and numpy load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glimpse.commands.common import (
    JsonOpt,
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

if TYPE_CHECKING:
    from glimpse.distributed import RayIndexJob


def index_with_ray(ctx: typer.Context, paths: list[Path], *, address: str | None, batch_size: int,
                   memory_budget: int | None, as_json: bool, workers: int | None = None,
                   encoders: int | None = None, max_megapixels: float | None = None, with_tags: bool = False) -> None:
    """``glimpse index --engine ray``: run :func:`glimpse.distributed.index_on_ray` and print what it did.

    ``memory_budget`` is in bytes (already parsed from ``--memory-budget``).
    """
    from glimpse.distributed import index_on_ray

    def announce(job: RayIndexJob) -> None:
        if as_json:
            return
        pending = len(job.pending_shards())
        err.print(f"[bold]Ray job[/] {len(job.paths)} files in {job.shard_count} shards, {pending} to encode"
                  f"{' and tag' if with_tags else ''} ({shown(str(job.work_dir))}"
                  f"{'; restarted: the files or settings changed since the last run' if job.restarted else ''})")

    with open_library_ctx(ctx) as lib:
        report, loaded = index_on_ray(lib, [str(p) for p in paths], address=address, batch_size=batch_size,
                                      workers=workers, encoders=encoders, max_megapixels=max_megapixels,
                                      with_tags=with_tags, memory_budget=memory_budget,
                                      progress=make_progress(as_json, "Encoding on Ray"), on_job=announce)
    if as_json:
        print_json({**report.to_dict(), "loaded": loaded})
        return
    rate = report.encoded / report.seconds if report.seconds > 0 else 0.0
    err.print(f"[bold]Indexed on Ray[/] {report.files} files: {report.shards} shards written now, "
              f"{report.shards_done_before} already done; {report.encoded} encoded, {report.failed} failed, "
              f"{report.skipped} not images — {report.seconds:.1f} s ({rate:.1f} images/s)")
    if report.tag_source is not None:
        err.print(f"[bold]Tagged[/] {report.tagged} image(s) ({report.tags} tags)")
    err.print(f"[bold]Loaded[/] {loaded} files into the library {shown(str(lib.directory))}")
    print_errors([(item["path"], item["reason"]) for item in report.errors])


@handles_errors
def bench_scale(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("--n", min=100, help="Number of synthetic vectors.")] = 100_000,
    dim: Annotated[int, typer.Option("--dim", min=2, help="Vector dimension.")] = 512,
    recall_target: Annotated[float, typer.Option(
        "--recall-target", min=0.01, max=1.0, help="Tune the ANN index to reach this recall@10.")] = 0.95,
    memory_budget: Annotated[str | None, typer.Option(
        "--memory-budget", help="Choose the index kind to fit this much RAM, e.g. 800MB.")] = None,
    flat_limit: Annotated[int, typer.Option("--flat-limit", min=1, help="Exact search below this many vectors.")
                          ] = 50_000,
    with_model: Annotated[bool, typer.Option(
        "--with-model", help="Also time a fresh search process that encodes query texts with --model.")] = False,
    as_json: JsonOpt = False,
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
    """Attach ``bench-scale`` (``index --engine ray`` is attached with ``index`` in glimpse.commands.search)."""
    app.command("bench-scale")(bench_scale)
