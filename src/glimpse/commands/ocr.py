"""``glimpse ocr``: the text in images, line by line (reading order, confidence, box).

The option names shared with ``index --ocr`` and ``search --text`` live here (``OcrModel``, ``TextFilter``,
``TextWeight``), so every command spells them the same.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glimpse.commands.common import err, handles_errors, open_library_ctx, options_of, out, print_json, shown
from glimpse.display import printable
from glimpse.errors import GlimpseError, LibraryNotFoundError, UserInputError

if TYPE_CHECKING:
    from glimpse.ocr.base import OcrLine

OcrModel = Annotated[str | None, typer.Option(
    "--ocr-model", metavar="NAME",
    help="OCR model (a name the OCR engine knows, or a model folder); default: the engine's default model.")]
TextFilter = Annotated[list[str] | None, typer.Option(
    "--text", metavar="TEXT",
    help="Only images whose recognised text contains TEXT (repeatable: all must match; case-, width- and "
         "space-insensitive, matches inside words). Needs `glimpse index --ocr`.")]
TextWeight = Annotated[float, typer.Option(
    "--text-weight", min=0.0,
    help="Weight of the text ranking when a plain query is fused with CLIP's (reciprocal-rank fusion; "
         "0 = CLIP only).")]


def line_dict(order: int, line: OcrLine) -> dict[str, Any]:
    """One line for JSON: reading order (from 1), text, confidence, box (4 [x, y] points, full-image pixels)."""
    return {"order": order, **line.to_dict()}


@handles_errors
def ocr(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files (or folders of them) to read.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print a JSON list of {path, lines: [{order, text, confidence, box}]} (errors: {path, error}).")
                       ] = False,
    ocr_model: OcrModel = None,
) -> None:
    """Read the text in images, line by line (see OCR_HELP)."""
    from glimpse.library import ocr_image
    from glimpse.pipeline import image_files

    results: list[dict[str, Any]] = []
    failed = 0
    with ExitStack() as stack:
        try:
            lib = stack.enter_context(open_library_ctx(ctx, create=False))
        except LibraryNotFoundError:
            if options_of(ctx).library is not None:
                raise  # a library was named and is not there: say so rather than read without it
            lib = None  # no library yet: read the images without stored text
        files = image_files(paths)
        if not files:
            raise UserInputError(f"no image files found in {', '.join(str(p) for p in paths)}")
        for path in files:
            try:
                lines = lib.ocr(path, model=ocr_model) if lib is not None else ocr_image(path, model=ocr_model)
            except GlimpseError as exc:
                failed += 1
                results.append({"path": printable(path), "error": str(exc)})
                continue
            results.append({"path": printable(path),
                            "lines": [line_dict(n, line) for n, line in enumerate(lines, start=1)]})
    if as_json:
        print_json(results)
    else:
        _print(results)
    if failed:
        raise typer.Exit(1)


def _print(results: list[dict[str, Any]]) -> None:
    for item in results:
        if "error" in item:
            err.print(f"[bold red]error:[/] {shown(item['error'])}", markup=True)
            continue
        if not item["lines"]:
            out.print(f"{item['path']}: no text found", markup=False)
            continue
        out.print(f"{item['path']}: {len(item['lines'])} line(s)", markup=False)
        for line in item["lines"]:
            box = " ".join(f"{x:g},{y:g}" for x, y in line["box"])
            out.print(f"  {line['order']:>3}  {line['confidence']:.2f}  {printable(line['text'])}   [{box}]",
                      markup=False)


OCR_HELP = (
    "Read the text in images: one line per recognised text line, in reading order, with its confidence and its "
    "box (4 corner points in image pixels, clockwise from the top-left of the text).\n\n"
    "Text the library already stores for an unchanged image (`glimpse index --ocr`) is shown without reading "
    "the image again; other images (also ones outside the library) are read now and nothing is stored. An image "
    "without text says \"no text found\"."
)


def register(app: typer.Typer) -> None:
    """Attach ocr."""
    app.command("ocr", help=OCR_HELP)(ocr)
