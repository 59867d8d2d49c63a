"""The ``glimpse`` command line: parse, call the library, format. Nothing else lives here.

Exit codes: 0 ok, 1 user error (bad input, missing model; message on stderr), 2 usage error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from glimpse.display import printable
from glimpse.errors import GlimpseError
from glimpse.settings import LibrarySettings

if TYPE_CHECKING:
    from glimpse.library import Hit, Library

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="glimpse",
    help="Index your images with CLIP-family models and search them by text or by image.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List the built-in models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

# soft_wrap: messages hold paths and commands that must stay copy-pasteable, not be folded at 80 columns.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


# The global options are the Library's settings: the server is given the same object (`glimpse serve`).
Options = LibrarySettings


def options_of(ctx: typer.Context) -> LibrarySettings:
    return ctx.find_root().obj  # type: ignore[no-any-return]


def handles_errors(fn: F) -> F:
    """Turn GlimpseError into a one-line message on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GlimpseError as exc:
            err.print(f"[bold red]error:[/] {shown(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(1) from exc
        except KeyboardInterrupt:
            err.print("interrupted — work committed so far is kept; run the same command again to continue")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def shown(text: str | os.PathLike[str]) -> str:
    """A path or message for a rich-markup line: terminal-safe (:func:`glimpse.display.printable`), then
    markup-escaped so that ``[red]`` in a file name is shown, not applied."""
    return escape(printable(text))


def print_errors(errors: Sequence[tuple[str, str]], verb: str = "failed", hint: str = " (see `glimpse status`)",
                 limit: int = 20) -> None:
    """The ``(path, reason)`` lines of a run on stderr, at most ``limit``, names and reasons escaped."""
    for path, reason in errors[:limit]:
        err.print(f"  [yellow]{verb}[/] {shown(path)}: {shown(reason)}", markup=True)
    if len(errors) > limit:
        err.print(f"  … and {len(errors) - limit} more{hint}", markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


class _NoticeHandler(logging.Handler):
    """Shows the library's notices (``glimpse.notices``) on stderr, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]notice:[/] {shown(record.getMessage())}", markup=True, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        from glimpse import __version__

        sys.stdout.write(f"glimpse {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    library: Annotated[Path | None, typer.Option(
        "--library", "-L", envvar="GLIMPSE_LIBRARY",
        help="Library directory (catalog + indexes). Default: $XDG_DATA_HOME/glimpse.")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", "-m", envvar="GLIMPSE_MODEL",
        help="Model name (see `glimpse models list`) or a local model directory. "
             "Default: the model the library was built with, else openai/clip-vit-base-patch32.")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="Vector store. Default: embedded FAISS inside the library.")] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device for encoding: cpu, cuda, mps.")] = "cpu",
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print glimpse's version and exit.")] = False,
) -> None:
    """glimpse — recognize and search anything in your image collections."""
    logger = logging.getLogger("glimpse")
    if not any(isinstance(h, _NoticeHandler) for h in logger.handlers):
        logger.addHandler(_NoticeHandler(logging.WARNING))
        logger.propagate = False  # shown once, by this handler, not again by Python's last-resort handler
    ctx.obj = LibrarySettings(library, model, store, device)


# -- progress --------------------------------------------------------------------------------------------
class RichProgress:
    """A progress bar with images/s and ETA on stderr."""

    def __init__(self, label: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err, transient=False,
        )
        self._label = label
        self._task: Any = None

    def start(self, total: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task(self._label, total=total, rate="")

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)
        speed = self._bar.tasks[0].speed
        self._bar.update(self._task, rate=f"{speed:.1f} img/s" if speed else "")

    def finish(self) -> None:
        self._bar.stop()


def make_progress(quiet: bool, label: str) -> RichProgress | None:
    return None if quiet or not err.is_terminal else RichProgress(label)


@contextmanager
def open_library_ctx(ctx: typer.Context, *, create: bool = True) -> Iterator[Library]:
    """The library of the global options; ``create=False`` for commands that only read one (a mistyped
    ``--library`` then says "no library at …" instead of making an empty one)."""
    lib = options_of(ctx).open(create=create)
    try:
        yield lib
    finally:
        lib.close()


# -- commands --------------------------------------------------------------------------------------------
@app.command()
@handles_errors
def index(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Folders and image files to index (incrementally).")],
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")] = 32,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help=(
        "Decode threads (default: CPU count, at most 4); with --engine ray, decode tasks at once "
        "(default: the free CPUs of the cluster)."))] = None,
    max_megapixels: Annotated[float, typer.Option(
        "--max-megapixels", help="Refuse images larger than this (decompression-bomb guard).")] = 100.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
    memory_budget: Annotated[str | None, typer.Option(
        "--memory-budget", help="Choose the vector index kind to fit this much RAM, e.g. 2GB.")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="local (this process) or ray (Ray Data; PATH may be a list file of paths/URLs).")] = "local",
    address: Annotated[str | None, typer.Option(
        "--address", help="Ray cluster address with --engine ray (auto: the running cluster).")] = None,
    encoders: Annotated[int | None, typer.Option(
        "--encoders", min=1, help="Encoder actors with --engine ray (default: one per GPU, else half the CPUs).")
                        ] = None,
    with_tags: Annotated[bool, typer.Option(
        "--tags", help="Also tag new and changed images (CLIP tagger of the library's model).")] = False,
) -> None:
    """Index folders and files: new and changed images are encoded, moved ones re-linked, deleted ones dropped."""
    if engine != "local":
        from glimpse.commands.scale import index_distributed

        index_distributed(ctx, paths, engine=engine, address=address, batch_size=batch_size,
                          memory_budget=memory_budget, as_json=as_json, workers=workers, encoders=encoders,
                          max_megapixels=max_megapixels, with_tags=with_tags)
        return
    from glimpse.vectors.select import parse_bytes

    budget = parse_bytes(memory_budget) if memory_budget else None
    with open_library_ctx(ctx) as lib:
        report = lib.index([str(p) for p in paths], batch_size=batch_size, workers=workers,
                           max_megapixels=max_megapixels, progress=make_progress(as_json, "Indexing"),
                           memory_budget=budget)
        tag_report = None
        if with_tags:
            from glimpse.tagging.library_tags import tag_library

            tag_report = tag_library(lib, progress=make_progress(as_json, "Tag vocabulary"))
    if as_json:
        print_json({**report.to_dict(), **({"tags": tag_report.to_dict()} if tag_report else {})})
        return
    if tag_report is not None:
        err.print(f"[bold]Tagged[/] {tag_report.tagged} image(s) ({tag_report.tags} tags), "
                  f"{tag_report.unchanged} unchanged")
    summary = (f"{report.added} new, {report.updated} updated, {report.moved} moved, {report.removed} removed, "
               f"{report.unchanged} unchanged, {report.failed} failed, {report.skipped} not images")
    err.print(f"[bold]Indexed[/] {summary} — {report.encoded} encoded in {report.seconds:.1f} s "
              f"({report.images_per_second:.1f} images/s)")
    print_errors(report.errors)


def print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    if not hits:
        err.print("no results")
        return
    for hit in hits:
        data = hit.to_dict()
        out.print(f"{data['score']:.4f}  {printable(hit.path)}", markup=False)


# Result filters shared by `search` and `similar` (Library.search / Library.similar take the same ones).
TagFilter = Annotated[list[str] | None, typer.Option(
    "--tag", help="Only images with this tag (repeatable; all are required).")]
NoTagFilter = Annotated[list[str] | None, typer.Option("--no-tag", help="No images with this tag (repeatable).")]
FolderFilter = Annotated[Path | None, typer.Option(
    "--folder", file_okay=False, help="Only images inside this folder (its subfolders included).")]
TopK = Annotated[int, typer.Option("-k", "--top", min=1, help="Number of results.")]
MinScore = Annotated[float | None, typer.Option("--min-score", help="Drop results scoring below this.")]
HitsJson = Annotated[bool, typer.Option("--json", help="Print a JSON list of {path, score, id, ...}.")]


@app.command()
@handles_errors
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(
        help="Text to look for. Combine terms with + and -, weight them as 2:term, "
             "e.g. \"beach +sunset -people\". A term naming an image file searches by that image.")] = "",
    k: TopK = 10,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Add an image term (repeatable).")] = None,
    min_score: MinScore = None,
    as_json: HitsJson = False,
    tag: TagFilter = None,
    no_tag: NoTagFilter = None,
    folder: FolderFilter = None,
) -> None:
    """Search the library by text, by image, or both."""
    with open_library_ctx(ctx, create=False) as lib:
        hits = lib.search(query, k, images=[str(p) for p in image or []], min_score=min_score, tags=tag,
                          no_tags=no_tag, folder=folder)
    print_hits(hits, as_json)


@app.command()
@handles_errors
def similar(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="An image file (indexed or not) or the id of an indexed image.")],
    k: TopK = 10,
    min_score: MinScore = None,
    as_json: HitsJson = False,
    tag: TagFilter = None,
    no_tag: NoTagFilter = None,
    folder: FolderFilter = None,
) -> None:
    """Find the images most like IMAGE."""
    target: str | int = int(image) if image.isdigit() and not os.path.exists(image) else image
    with open_library_ctx(ctx, create=False) as lib:
        hits = lib.similar(target, k, min_score=min_score, tags=tag, no_tags=no_tag, folder=folder)
    print_hits(hits, as_json)


@app.command()
@handles_errors
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show what the library holds: roots, counts, model, index, recent errors."""
    with open_library_ctx(ctx, create=False) as lib:
        info = lib.status()
    if as_json:
        print_json(info.to_dict())
        return
    out.print(f"library   {printable(str(info.library))}", markup=False)
    out.print(f"model     {printable(info.model)}" + (f"  (key {info.model_key})" if info.model_key else ""),
              markup=False)
    out.print(f"images    {info.images} indexed, {info.errors} failed, {info.skipped} not images", markup=False)
    out.print(f"vectors   {info.vectors} stored, {info.index_vectors} in the index ({info.index_kind})", markup=False)
    for root in info.roots:
        out.print(f"root      {printable(root)}", markup=False)
    for m in info.models:
        if m["key"] != info.model_key:
            out.print(f"also      {printable(m['name'])} ({m['embeddings']} vectors, key {m['key']})", markup=False)
    for item in info.recent_errors[:10]:
        out.print(f"error     {printable(item['path'])}: {printable(item['reason'])}", markup=False)


@app.command()
@handles_errors
def remove(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to forget (nothing is deleted on disk).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the count as JSON.")] = False,
) -> None:
    """Forget files or whole folders from the library."""
    with open_library_ctx(ctx, create=False) as lib:
        removed = lib.remove([str(p) for p in paths])
    if as_json:
        print_json({"removed": removed})
    else:
        err.print(f"forgot {removed} file(s)")


@app.command("rebuild-index")
@handles_errors
def rebuild_index(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="FAISS factory string, e.g. 'IVF4096,PQ64', or 'auto' (by size and memory budget).")] = None,
    recall_target: Annotated[float | None, typer.Option(
        "--recall-target", min=0.01, max=1.0, help="Tune nprobe to reach this recall@10 vs exact search.")] = None,
) -> None:
    """Rebuild the vector index of the current model from the catalog."""
    with open_library_ctx(ctx, create=False) as lib:
        count = lib.rebuild_index(kind=kind, recall_target=recall_target)
        kind_now = lib.status().index_kind
    err.print(f"rebuilt the index: {count} vectors, {kind_now}")


@models_app.command("list")
@handles_errors
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the models as JSON.")] = False,
) -> None:
    """The built-in model names (any local model directory works too)."""
    from glimpse.registry import list_models

    entries = list_models()
    if as_json:
        print_json([e.to_dict() if hasattr(e, "to_dict") else e.__dict__ for e in entries])
        return
    for e in entries:
        data = e.to_dict() if hasattr(e, "to_dict") else e.__dict__
        langs = ",".join(data.get("languages", ()))
        out.print(f"{data['name']:<45} {data.get('family', ''):<13} dim {data.get('dim', '?'):<5} {langs}",
                  markup=False)


# Feature areas add their commands from their own modules: each exposes ``register(app)`` and keeps its
# top-level imports light (no torch), so `glimpse --help` and `glimpse search` stay fast.
COMMAND_MODULES = (
    "glimpse.commands.onnx",        # export, bench
    "glimpse.commands.understand",  # classify, moderate, dupes, eval, train, dataset
    "glimpse.commands.tagging",     # tag, tags
    "glimpse.commands.server",      # serve
    "glimpse.commands.scale",       # index-scale tools
)


def _register_feature_commands() -> None:
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(app)


_register_feature_commands()


def main() -> None:
    """Console entry point."""
    app()

