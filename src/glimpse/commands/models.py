"""Models: ``models list|info|download``, ``export`` (to ONNX), ``bench`` (torch vs ONNX speed), ``train
probe|clip`` and ``dataset split|stats``.

Grouped by what they work on: the model itself, not a library's images. Training is here because its
output is a model (a CLIP checkpoint, or a few-shot probe that ``classify --probe`` loads), and the dataset
tools because they prepare what training consumes (train/val/test splits, the mean/std of a model trained
from scratch). Imports of the feature modules happen inside the commands so that ``glimpse --help`` stays fast.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from glimpse.commands.common import (
    App,
    JsonOpt,
    err,
    handles_errors,
    open_library_ctx,
    options_of,
    out,
    print_errors,
    print_json,
)
from glimpse.display import printable
from glimpse.errors import UserInputError


def _size(mb: int | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb} MB"


def _entry_row(entry: Any) -> dict[str, Any]:
    """An entry's fields plus where it is: ``installed`` and ``path`` (the complete local copy, or ``None``)."""
    from glimpse.registry import locate

    location = locate(entry.name)
    return {**entry.to_dict(), "installed": location.installed,
            "path": str(location.directory) if location.directory else None}


@handles_errors
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the models as JSON.")] = False,
) -> None:
    """The curated models (immich's ONNX repos run without torch): runtime, dim, size, languages, installed.

    Any hub repo id or local model directory works with --model too."""
    from glimpse.registry import DEFAULT_MODEL, list_models

    rows = [_entry_row(e) for e in list_models()]
    if as_json:
        print_json(rows)
        return
    out.print(f"{'name':<64} {'runtime':<7} {'dim':>5} {'size':>8} {'recall':>6}  {'languages':<14} installed",
              markup=False)
    for row in rows:
        recall = f"{row['recall']:.1f}" if row["recall"] is not None else "-"
        mark = "yes" if row["installed"] else "no"
        default = "  (default)" if row["name"] == DEFAULT_MODEL else ""
        out.print(f"{row['name']:<64} {row['runtime']:<7} {row['dim']:>5} {_size(row['size_mb']):>8} {recall:>6}  "
                  f"{','.join(row['languages']):<14} {mark}{default}", markup=False)
    err.print("recall: immich's Crossmodal-3600 English retrieval recall (%); size: approximate fp32 download. "
              "`glimpse models info NAME` for details, `glimpse models download NAME` to fetch one now.",
              markup=False)


def _files_of(directory: Path) -> list[dict[str, Any]]:
    """The files below ``directory`` (relative path and size in bytes; symlinks into the cache followed)."""
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            files.append({"path": path.relative_to(directory).as_posix(), "bytes": path.stat().st_size})
    return files


@handles_errors
def models_info(
    name: Annotated[str, typer.Argument(help="Curated name, hub repo id or local model directory.")],
    as_json: JsonOpt = False,
) -> None:
    """Everything known about a model: registry fields, where it is (or would be downloaded to), its files."""
    from glimpse.registry import file_selection, locate

    location = locate(name)
    info: dict[str, Any] = {"name": location.entry.name if location.entry else name}
    if location.entry is not None:
        info.update(location.entry.to_dict())
    selection = file_selection(location.runtime) if location.runtime else None
    info.update({
        "repo_id": location.repo_id,
        "url": f"https://huggingface.co/{location.repo_id}" if location.repo_id else None,
        "runtime": location.runtime or (location.entry.runtime if location.entry else None),
        "installed": location.installed,
        "path": str(location.directory) if location.directory else None,
        "cache_folder": str(location.cache_folder) if location.cache_folder else None,
        "missing": list(location.missing),
        "download": {"allow": list(selection.allow), "ignore": list(selection.ignore)} if selection else None,
        "files": _files_of(location.directory) if location.directory else [],
    })
    if as_json:
        print_json(info)
        return
    for key in ("name", "repo_id", "url", "runtime", "family", "dim", "languages", "size_mb", "recall",
                "description", "aliases", "installed", "path", "cache_folder", "missing"):
        value = info.get(key)
        if value in (None, [], ()):
            continue
        shown_value = ", ".join(map(str, value)) if isinstance(value, list) else value
        out.print(f"{key:<13} {printable(str(shown_value))}", markup=False)
    if selection and not location.installed:
        out.print(f"{'downloads':<13} {', '.join(selection.allow)} (not {', '.join(selection.ignore) or '-'})",
                  markup=False)
    for item in info["files"]:
        out.print(f"  {item['bytes']:>13,}  {printable(item['path'])}", markup=False)


@handles_errors
def models_download(
    name: Annotated[str, typer.Argument(help="Curated name or hub repo id.")],
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model into the Hugging Face cache now (only the files it needs; resumes an interrupted download)."""
    from glimpse.registry import download_model, locate

    location = locate(name)
    if location.repo_id is None:
        raise UserInputError(f"{name} is a local directory: it is already here, there is nothing to download")
    folder = location.directory or download_model(name)
    if as_json:
        print_json({"name": name, "repo_id": location.repo_id, "path": str(folder),
                    "already_installed": location.installed})
        return
    if location.installed:
        err.print(f"{location.repo_id} is already installed", markup=False)
    out.print(printable(str(folder)), markup=False)


# -- export, bench --------------------------------------------------------------------------------------
@handles_errors
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


@handles_errors
def bench(
    ctx: typer.Context,
    images: Annotated[list[Path] | None, typer.Argument(help="Folders/images to encode (default: generated).")] = None,
    onnx_model: Annotated[list[Path] | None, typer.Option(
        "--onnx", help="ONNX model directory to compare (repeatable; e.g. an fp32 and an int8 export).")] = None,
    no_torch: Annotated[bool, typer.Option("--no-torch", help="Skip the torch row.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Images to use at most.")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder call.")] = 32,
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


# -- train ----------------------------------------------------------------------------------------------
class ProbeChoice(StrEnum):
    """``train probe --kind``."""

    linear = "linear"
    prototype = "prototype"


@handles_errors
def train_probe_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="ImageFolder with the labelled examples.")],
    output: Annotated[Path, typer.Argument(help="Probe file to write (e.g. probe.glimpse).")],
    kind: Annotated[ProbeChoice, typer.Option(
        "--kind", help="linear (logistic regression) or prototype (class means).")] = ProbeChoice.linear,
    as_json: JsonOpt = False,
) -> None:
    """Train a few-shot classifier on the library model's embeddings; `classify --probe` uses it."""
    import numpy as np

    from glimpse.datasets import read_image_folder
    from glimpse.evaluate import top_k_accuracy
    from glimpse.probe import train_probe

    folder = read_image_folder(data)
    with open_library_ctx(ctx) as lib:
        found = lib.vectors(folder.paths)
        # lib.vectors lists files by absolute path; the folder may have been given relative
        label_of = {os.path.abspath(p): y for p, y in zip(folder.paths, folder.labels, strict=True)}
        labels = np.array([label_of[os.path.abspath(p)] for p in found.paths], dtype=np.int64)
        probe = train_probe(found.vectors, labels, folder.class_names(), lib.spec.key, lib.spec.name,
                            kind=kind.value)  # type: ignore[arg-type]
        probe.save(output)
    summary = {"probe": str(output), "kind": probe.kind, "classes": probe.labels, "model_key": probe.model_key,
               "images": len(labels), "train_top1": top_k_accuracy(probe.probabilities(found.vectors), labels, 1),
               "vectors": found.summary()}
    if as_json:
        print_json(summary)
    else:
        err.print(f"wrote {printable(output)}: {probe.kind} probe, {len(probe.labels)} classes, {len(labels)} images, "
                  f"train top-1 {summary['train_top1']:.4f}", markup=False)


@handles_errors
def train_clip_cmd(
    data: Annotated[Path | None, typer.Option("--data", help="ImageFolder (captions = class names x templates).")
                    ] = None,
    captions: Annotated[Path | None, typer.Option(
        "--captions", help="Image-caption pairs instead: COCO JSON or Flickr-style txt (with --images).")] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Image folder of --captions.")] = None,
    output: Annotated[Path, typer.Option("--out", help="Output checkpoint directory (Hugging Face format).")
                      ] = ...,  # type: ignore[assignment]
    config: Annotated[str, typer.Option("--config", help="Size config when training from scratch: tiny, small.")
                      ] = "tiny",
    base: Annotated[str | None, typer.Option("--base", help="Fine-tune this model (name or directory) instead.")
                    ] = None,
    tokenizer: Annotated[Path | None, typer.Option(
        "--tokenizer", help="From scratch: a folder with tokenizer.json (e.g. any CLIP model directory).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, warm-up + cosine).")] = 2e-3,
    templates: Annotated[str, typer.Option("--templates", help="Caption templates for ImageFolder data.")] = "short",
    eval_folder: Annotated[Path | None, typer.Option("--eval", help="ImageFolder scored zero-shot every epoch.")
                           ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default: all cores).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Contrastive (CLIP) training from scratch or fine-tuning; the output works with every other command."""
    from glimpse.templates import load_templates
    from glimpse.train import TrainOptions, caption_data, image_folder_data, train_clip

    if (data is None) == (captions is None):
        raise UserInputError("give exactly one of --data IMAGEFOLDER or --captions FILE (with --images DIR)")
    if data is not None:
        samples = image_folder_data(data, load_templates(templates))
    else:
        from glimpse.datasets import read_coco_captions, read_flickr_captions

        if images is None and captions.suffix.lower() != ".json":  # type: ignore[union-attr]
            raise UserInputError("--captions in Flickr format needs --images DIR")
        pairs = (read_coco_captions(captions, images) if captions.suffix.lower() == ".json"  # type: ignore[union-attr]
                 else read_flickr_captions(captions, images))  # type: ignore[arg-type]
        samples = caption_data(pairs.pairs())
    options = TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, templates=templates, seed=seed,
                           max_steps=max_steps, threads=threads)
    report = train_clip(samples, output, base=base, config=config, tokenizer=tokenizer, options=options,
                        eval_folder=eval_folder, log=lambda message: err.print(printable(message), markup=False))
    data_out: dict[str, Any] = report.to_dict()
    data_out.pop("step_losses")
    if as_json:
        print_json(data_out)
    else:
        err.print(f"saved {printable(output)} after {report.steps} steps in {report.seconds:.0f} s "
                  f"(final loss {report.losses[-1]:.4f}); use it with --model {printable(output)}", markup=False)


# -- dataset -------------------------------------------------------------------------------------------
@handles_errors
def dataset_split(
    source: Annotated[Path, typer.Argument(help="ImageFolder to split.")],
    dest: Annotated[Path, typer.Argument(help="New folder for train/ val/ test/.")],
    val: Annotated[float, typer.Option("--val", help="Validation fraction per class.")] = 0.1,
    test: Annotated[float, typer.Option("--test", help="Test fraction per class.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same split.")] = 0,
    link: Annotated[bool, typer.Option("--link", help="Hard-link instead of copying.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deterministic, per-class (stratified) train/val/test split of an ImageFolder."""
    from glimpse.datasets import split_image_folder

    report = split_image_folder(source, dest, val=val, test=test, seed=seed, link=link).to_dict()
    if as_json:
        print_json(report)
    else:
        totals = report["totals"]
        err.print(f"split into {printable(dest)}: train {totals['train']}, val {totals['val']}, test {totals['test']}",
                  markup=False)


@handles_errors
def dataset_stats(
    folder: Annotated[Path, typer.Argument(help="Folder of images (walked recursively).")],
    size: Annotated[int | None, typer.Option("--size", min=1, help="Shrink each image's short side to this first.")
                    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-channel mean/std (RGB, 0..1) over a folder, streamed one image at a time."""
    from glimpse.datasets import channel_stats

    stats = channel_stats(folder, size=size).to_dict()
    if as_json:
        print_json(stats)
        return
    out.print(f"images {stats['images']}  pixels {stats['pixels']}", markup=False)
    out.print("mean   " + ", ".join(f"{v:.4f}" for v in stats["mean"]), markup=False)
    out.print("std    " + ", ".join(f"{v:.4f}" for v in stats["std"]), markup=False)
    print_errors([(item["path"], item["reason"]) for item in stats["failed"]], verb="skipped", hint="")


def register(app: typer.Typer) -> None:
    """Attach the ``models`` group, export, bench, and the ``train`` and ``dataset`` groups."""
    models_app = App(help="The curated models: list, info, download.", no_args_is_help=True)
    models_app.command("list")(models_list)
    models_app.command("info")(models_info)
    models_app.command("download")(models_download)
    app.add_typer(models_app, name="models")
    app.command("export")(export)
    app.command("bench")(bench)
    train_app = App(help="Train a few-shot probe or a CLIP model.", no_args_is_help=True)
    train_app.command("probe")(train_probe_cmd)
    train_app.command("clip")(train_clip_cmd)
    app.add_typer(train_app, name="train")
    dataset_app = App(help="Dataset tools: split an ImageFolder, per-channel statistics.",
                              no_args_is_help=True)
    dataset_app.command("split")(dataset_split)
    dataset_app.command("stats")(dataset_stats)
    app.add_typer(dataset_app, name="dataset")
