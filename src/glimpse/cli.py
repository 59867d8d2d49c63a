"""The ``glimpse`` command line: parse, call the library, format. Nothing else lives here.

Exit codes: 0 ok, 1 user error (bad input, missing model; message on stderr), 2 usage error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from typer.main import get_command_name

from glimpse.commands.common import App, Device, err, shown
from glimpse.settings import LibrarySettings

app = App(
    name="glimpse",
    help="Index your images with CLIP-family models and search them by text or by image.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


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
             "Default: the model the library was built with, else immich-app/ViT-B-32__openai (ONNX).")] = None,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="STORE",
        help="Vector store: faiss (the default: embedded in the library), a milvus-lite FILE.db, or a Milvus "
             "server milvus://HOST:PORT.")] = None,
    device: Annotated[Device, typer.Option("--device", help="Torch device for encoding.")] = Device.cpu,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version, help="Print glimpse's version and exit.")] = False,
) -> None:
    """glimpse — recognize and search anything in your image collections."""
    logger = logging.getLogger("glimpse")
    if not any(isinstance(h, _NoticeHandler) for h in logger.handlers):
        logger.addHandler(_NoticeHandler(logging.WARNING))
        logger.propagate = False  # shown once, by this handler, not again by Python's last-resort handler
    # The global options are the Library's settings: the server is given the same object (`glimpse serve`).
    ctx.obj = LibrarySettings(library, model, store, device.value)


# Command modules, grouped by what users see. Each exposes ``register(app)``, which only attaches its
# commands, and keeps its top-level imports light (no torch, numpy or faiss), so `glimpse --help` and
# `glimpse search` stay fast.
COMMAND_MODULES = (
    "glimpse.commands.search",      # index, search, similar, status, remove, rebuild-index
    "glimpse.commands.ocr",         # ocr (and the OCR options index and search share)
    "glimpse.commands.understand",  # classify, moderate, dupes, eval classify|retrieval|multilabel|tags
    "glimpse.commands.tagging",     # tag, tags, tag-calibrate, tag-export
    "glimpse.commands.models",      # models list, export, bench, train probe|clip, dataset split|stats
    "glimpse.commands.server",      # serve
    "glimpse.commands.scale",       # bench-scale (index --engine ray is parsed by index)
    "glimpse.commands.watch",       # watch
)


def _register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


#: the global options that take a value (``main_options``; a test checks the two agree)
VALUE_OPTIONS = frozenset({"--library", "-L", "--model", "-m", "--store", "--device"})


def invoked_command(args: Sequence[str]) -> str | None:
    """The command word of ``args`` (``sys.argv[1:]``): the first one after the global options, else ``None``."""
    words = iter(args)
    for word in words:
        if word == "--":
            return next(words, None)
        if word in VALUE_OPTIONS:
            next(words, None)  # the option's value
        elif not word.startswith("-"):
            return word
    return None


@contextmanager
def _only_command(name: str | None) -> Iterator[None]:
    """While the command line runs, the app holds only the command (or group) called ``name``.

    Typer turns every registered command into a click command before it parses anything, evaluating each
    one's annotations: 75 ms of every cold command on a 2-core machine (a twelfth of a cold ``glimpse search``),
    for the one command that runs. ``--help`` without a command, and a word that names no command (click's
    error suggests the close ones), keep them all."""
    commands, groups = app.registered_commands, app.registered_groups
    picked = [c for c in commands if c.callback and (c.name or get_command_name(c.callback.__name__)) == name]
    picked_groups = [g for g in groups if g.name == name]
    if name is None or not (picked or picked_groups):
        yield
        return
    app.registered_commands, app.registered_groups = picked, picked_groups
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = commands, groups


def run() -> None:
    """Run the command line in ``sys.argv``; ends with ``SystemExit`` as any click application does (what a
    caller that inspects the process afterwards, such as a test, calls instead of ``main``)."""
    with _only_command(invoked_command(sys.argv[1:])):
        app()


def main() -> None:
    """Console entry point: ``run()``, then the process ends without tearing the interpreter down.

    Finalising the interpreter (freeing onnxruntime's environment and every module) took 60-90 ms after each
    command's last output here: a seventh of a cold ``glimpse search``. So once the command has returned,
    and only when nothing else is left to wait for (no other non-daemon thread, no tracer or profiler: their
    reports are written at teardown), the ``atexit`` handlers run, the output is flushed and the process
    exits with the command's code through ``os._exit``. Anything else exits as usual.
    """
    try:
        run()
    except SystemExit as exc:
        _end_process(exc)
        raise


def _end_process(exc: SystemExit) -> None:
    """Exit at once with ``exc``'s code (returns instead when a normal exit is needed, see ``main``)."""
    import atexit
    import contextlib
    import os
    import threading

    code = exc.code
    if not (code is None or isinstance(code, int)) or sys.gettrace() is not None or sys.getprofile() is not None:
        return  # a message to print (SystemExit("text")), or someone tracing: the usual exit does it
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return  # the interpreter joins them
    atexit._run_exitfuncs()  # what a normal exit runs first (logging.shutdown is one of them)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`glimpse search … | head`) or stream
            stream.flush()
    os._exit(code or 0)
