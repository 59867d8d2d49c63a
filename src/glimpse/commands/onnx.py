"""``glimpse export`` and ``glimpse bench``: parse, call the library, format (imports stay light here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glimpse.cli import err, handles_errors, options_of, out, print_json
from glimpse.display import printable
from glimpse.errors import UserInputError


def export(
    model: Annotated[str, typer.Argument(help="Registry name, hub repo id or local checkpoint directory.")],
    output: Annotated[Path, typer.Argument(metavar="OUT", help="New directory for the ONNX model.")],
    int8: Annotated[bool, typer.Option("--int8", help="int8 quantisation (parity >= 0.99 to torch).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 weights (for GPUs; parity >= 0.999).")] = False,
    bundle: Annotated[bool, typer.Option("--bundle", help="Also write an edge bundle into OUT/bundle.")] = False,
    calibrate: Annotated[Path | None, typer.Option(
        "--calibrate", help="With --int8: static quantisation calibrated on the images in this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result and parity report as JSON.")] = False,
) -> None:
    """Export a model to ONNX (visual.onnx, textual.onnx, tokenizer.json, spec.json), checked against torch."""
    from glimpse.encoders.export import export_model

    if int8 and fp16:
        raise UserInputError("--int8 and --fp16 exclude each other; pick one precision")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    result = export_model(model, output, precision=precision, calibrate=calibrate, bundle=bundle,
                          log=None if as_json else lambda msg: err.print(printable(msg), markup=False))
    if as_json:
        print_json(result.to_dict())
        return
    report = result.report
    err.print(f"parity ({precision}, needs >= {report.threshold}): image min cosine {report.image.min_cosine:.6f}, "
              f"text min cosine {report.text.min_cosine:.6f}", markup=False)
    out.print(printable(str(result.directory)), markup=False)
    if result.bundle:
        out.print(printable(str(result.bundle)), markup=False)


def bench(
    ctx: typer.Context,
    images: Annotated[list[Path] | None, typer.Argument(help="Folders/images to encode (default: generated).")] = None,
    onnx_model: Annotated[list[Path] | None, typer.Option(
        "--onnx", help="ONNX model directory to compare (repeatable; e.g. an fp32 and an int8 export).")] = None,
    no_torch: Annotated[bool, typer.Option("--no-torch", help="Skip the torch row.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Images to use at most.")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per-stage latency, images/s, CPU load (% of all cores) and peak memory: torch vs ONNX models."""
    from glimpse.bench import bench_models
    from glimpse.library import library_model

    opts = options_of(ctx)
    models: list[str] = [] if no_torch else [opts.model or library_model(opts.library)]
    models += [str(p) for p in onnx_model or []]
    if not models:
        raise UserInputError("nothing to measure: give --onnx DIR or leave out --no-torch")
    rows = bench_models(models, [str(p) for p in images or []], limit=limit, batch_size=batch_size,
                        device=opts.device)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    out.print(f"{'model':<32} {'runtime':<8} {'stage':<12} {'ms/img':>8} {'img/s':>8} {'cpu %':>6} {'peak MiB':>9}",
              markup=False)
    for row in rows:
        for stage in row.stages:
            out.print(f"{row.label[-32:]:<32} {row.runtime:<8} {stage.name:<12} {stage.ms_per_item:>8.2f} "
                      f"{stage.per_second:>8.1f} {stage.cpu_percent:>6.0f} {row.peak_mib:>9.0f}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``bench`` to the glimpse CLI."""
    app.command("export")(handles_errors(export))
    app.command("bench")(handles_errors(bench))
