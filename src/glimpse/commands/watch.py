"""``glimpse watch``: keep a library current with its folders (``glimpse.watch``), until Ctrl-C."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from glimpse.commands.common import err, handles_errors, open_library_ctx, print_errors
from glimpse.errors import UserInputError


@handles_errors
def watch(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Folders to watch (default: the library's roots).", file_okay=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")] = 32,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", min=1, help="Decode threads (default: CPU count, at most 4).")] = None,
    max_megapixels: Annotated[float, typer.Option(
        "--max-megapixels", help="Refuse images larger than this (decompression-bomb guard).")] = 100.0,
    debounce_ms: Annotated[int, typer.Option(
        "--debounce-ms", min=1, help="Group file-system events for at most this long before indexing.")] = 1600,
    settle: Annotated[float, typer.Option(
        "--settle", min=0.0, help="Seconds a changed file must keep its size before it is indexed.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line per indexing run.")] = False,
) -> None:
    """Watch folders and index what changes (new, changed, moved, deleted images) until Ctrl-C.

    First catches up with what changed while nothing watched, then indexes in debounced batches.

    Renames are moves (no re-encoding); the library's writer lock is held only while a run indexes."""
    from glimpse.watch import DEFAULT_STEP_MS, WatchOptions, WatchRun, watch_library

    options = WatchOptions(debounce_ms=debounce_ms, step_ms=min(DEFAULT_STEP_MS, debounce_ms), settle_s=settle,
                           settle_timeout_s=max(120.0, settle))
    with open_library_ctx(ctx) as lib:
        roots = [str(p) for p in paths] if paths else lib.status().roots
        if not roots:
            raise UserInputError("nothing to watch: give folders (`glimpse watch ~/Pictures`) or index some first")

        def report(run: WatchRun) -> None:
            r = run.report
            if as_json:
                line = {"catch_up": run.catch_up, "changed": run.changed, "seconds": round(run.seconds, 3),
                        **r.to_dict()}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                sys.stdout.flush()
                return
            what = "caught up" if run.catch_up else f"{run.changed} change(s)"
            err.print(f"[bold]{what}[/]: {r.added} new, {r.updated} updated, {r.moved} moved, {r.removed} "
                      f"removed, {r.failed} failed — {r.encoded} encoded in {run.seconds:.1f} s")
            print_errors(r.errors)

        if not as_json:
            err.print(f"watching {len(roots)} folder(s); Ctrl-C stops", markup=False)
        watch_library(lib, roots, options=options, on_run=report,
                      index=lambda chosen: lib.index(chosen, batch_size=batch_size, workers=workers,
                                                     max_megapixels=max_megapixels))


def register(app: typer.Typer) -> None:
    """Attach ``watch`` to the CLI."""
    app.command("watch")(watch)
