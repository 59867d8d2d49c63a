"""What every command module shares: the two consoles, error handling, output helpers, progress, the
library of the global options, and the option types used by more than one command.

Imports stay light (typer and rich only): ``glimpse --help`` loads this module, never torch, numpy or faiss.
Nothing here imports ``glimpse.cli``: the app imports the command modules, never the other way round.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand

from glimpse.display import printable
from glimpse.errors import GlimpseError

if TYPE_CHECKING:
    from glimpse.library import Library
    from glimpse.settings import LibrarySettings

F = TypeVar("F", bound=Callable[..., Any])

# soft_wrap: messages hold paths and commands that must stay copy-pasteable, not be folded at 80 columns.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


class Command(TyperCommand):
    """A command whose usage line reads ``glimpse index [OPTIONS] PATHS...``.

    Typer's own writes required arguments as ``{paths}...`` and a named one as ``{OUT}``, which reads like a
    template placeholder left unfilled.
    """

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


class App(typer.Typer):
    """``typer.Typer`` making :class:`Command` commands: the app and every command group use it."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None,  # type: ignore[override]
                **options: Any) -> Callable[[F], F]:
        return super().command(name, cls=cls or Command, **options)


class Device(StrEnum):
    """The torch devices ``--device`` accepts (``--help`` lists them; another value is a usage error)."""

    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def options_of(ctx: typer.Context) -> LibrarySettings:
    """The global options (``--library``, ``--model``, ``--store``, ``--device``) of the running command."""
    return ctx.find_root().obj  # type: ignore[no-any-return]


@contextmanager
def open_library_ctx(ctx: typer.Context, *, create: bool = True) -> Iterator[Library]:
    """The library of the global options; ``create=False`` for commands that only read one (a mistyped
    ``--library`` then says "no library at …" instead of making an empty one)."""
    from glimpse.library import Library

    lib = Library.from_settings(options_of(ctx), create=create)
    try:
        yield lib
    finally:
        lib.close()


def handles_errors(fn: F) -> F:
    """Turn GlimpseError into a one-line message on stderr and exit code 1 (Ctrl-C: exit code 130)."""

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


def print_skipped(errors: Sequence[dict[str, str]], limit: int = 20) -> None:
    """The ``{path, reason}`` files a command could not read, as "N file(s) skipped" and the first lines."""
    if errors:
        err.print(f"{len(errors)} file(s) could not be read and were skipped:", markup=False)
        print_errors([(item["path"], item["reason"]) for item in errors], verb="skipped", hint="", limit=limit)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (non-ASCII kept as is)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


# -- progress --------------------------------------------------------------------------------------------
class RichProgress:
    """A progress bar with images/s and ETA on stderr (the library's ``Progress`` protocol)."""

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

    def note(self, text: str | None) -> None:
        """Shown beside the label while a long file is worked on (a long video's scan)."""
        self._bar.update(self._task, description=f"{self._label} ({text})" if text else self._label)


def make_progress(quiet: bool, label: str) -> RichProgress | None:
    """A bar on an interactive stderr, else none (``quiet``: JSON output, or a pipe)."""
    return None if quiet or not err.is_terminal else RichProgress(label)


# -- option types shared by several commands -------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
# -k/--top everywhere a command returns a ranked list (search, similar, classify, tags); each command's help
# says what is ranked.
TopK = Annotated[int, typer.Option("-k", "--top", min=1, help="Number of results.")]
MinScore = Annotated[float | None, typer.Option("--min-score", help="Drop results scoring below this.")]
# Result filters shared by `search` and `similar` (Library.search / Library.similar take the same ones).
TagFilter = Annotated[list[str] | None, typer.Option(
    "--tag", help="Only images with this tag (repeatable; all are required).")]
NoTagFilter = Annotated[list[str] | None, typer.Option("--no-tag", help="No images with this tag (repeatable).")]
FolderFilter = Annotated[Path | None, typer.Option(
    "--folder", file_okay=False, help="Only images inside this folder (its subfolders included).")]

# Capture-metadata filters shared by `search`, `similar` and the API (rules in glimpse.metafilter).
AfterFilter = Annotated[str | None, typer.Option(
    "--after", metavar="DATE", help="Only photos taken at or after the start of DATE (YYYY, YYYY-MM, YYYY-MM-DD, "
                                    "YYYY-MM-DDTHH:MM; the camera's local time).")]
BeforeFilter = Annotated[str | None, typer.Option(
    "--before", metavar="DATE", help="Only photos taken before the start of DATE (so --after 2023-01 --before "
                                     "2024-06 is Jan 2023 through May 2024).")]
CameraFilter = Annotated[str | None, typer.Option(
    "--camera", help="Only photos from a camera whose make or model contains this (case-insensitive).")]
NearFilter = Annotated[str | None, typer.Option(
    "--near", metavar="LAT,LON[,RADIUS]", help="Only photos taken within RADIUS of a place (GPS in the EXIF), "
                                               "e.g. 48.85,2.35,20km (km or m; default 10km).")]
ItemType = Annotated[str | None, typer.Option(
    "--type", metavar="photo|video", help="Only photos, or only videos (searched by their sampled frames).")]
PerVideo = Annotated[int, typer.Option(
    "--per-video", min=1, help="Frames listed per video hit (its best ones, best first; a video is one hit).")]
SortOrder = Annotated[str, typer.Option(
    "--sort", metavar="score|date", help="Order of the hits: score (best first) or date (newest capture first).")]


def metadata_filter(after: str | None, before: str | None, camera: str | None, near: str | None) -> Any:
    """The ``MetadataFilter`` of the command-line options (None when none is given)."""
    if after is None and before is None and camera is None and near is None:
        return None
    from glimpse.metafilter import MetadataFilter

    return MetadataFilter.parse(after=after, before=before, camera=camera, near=near)
