"""CLI: classify, moderate, dupes, eval classify|retrieval, train probe|clip, dataset split|stats.

Only parsing, calling the library and formatting live here; imports of the feature modules happen inside
the commands so that ``glimpse --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glimpse.cli import err, handles_errors, open_library_ctx, out, print_errors, print_json
from glimpse.display import printable
from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.library import ImageVectors, Library

eval_app = typer.Typer(help="Measure classification and retrieval quality on your own data.", no_args_is_help=True)
train_app = typer.Typer(help="Train a few-shot probe or a CLIP model.", no_args_is_help=True)
dataset_app = typer.Typer(help="Dataset tools: split an ImageFolder, per-channel statistics.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _vectors(lib: Library, paths: list[Path] | None) -> ImageVectors:
    """Vectors of the given files/folders, or of the whole library when none are given."""
    return lib.vectors([str(p) for p in paths] if paths else None)


def _report_failures(found: ImageVectors) -> None:
    print_errors([(item["path"], item["reason"]) for item in found.errors], verb="skipped", hint="")


def _display(path: str) -> str:
    import os

    return os.fsencode(path).decode("utf-8", "replace")


# -- classify ------------------------------------------------------------------------------------------
@handles_errors
def classify(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Images or folders (default: every image in the library, from stored embeddings).")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated class names: cat,dog,bird.")] = None,
    labels_file: Annotated[Path | None, typer.Option("--labels-file", help="File with one class name per line.")
                           ] = None,
    templates: Annotated[str | None, typer.Option(
        "--templates", help="Prompt templates: openai (80 ImageNet templates), short, photo, or a file.")] = None,
    probe: Annotated[Path | None, typer.Option("--probe", help="Use a probe from `glimpse train probe`.")] = None,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Labels shown per image.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot classify images into your labels (or with a trained probe)."""
    from glimpse.zeroshot import ZeroShotClassifier, parse_labels, text_cache_for, top_k

    with open_library_ctx(ctx) as lib:
        if probe is not None:
            if labels or labels_file:
                raise UserInputError("--probe brings its own classes; leave out --labels/--labels-file")
            from glimpse.probe import Probe

            loaded = Probe.load(probe)
            loaded.check_model(lib.spec.key)
            found = _vectors(lib, paths)
            results = top_k(loaded.probabilities(found.vectors), loaded.labels, top)
        else:
            names = parse_labels(labels, str(labels_file) if labels_file else None)
            found = _vectors(lib, paths)
            classifier = ZeroShotClassifier.build(lib.encoder, names, templates,
                                                  text_cache_for(lib.directory, lib.spec.key))
            results = classifier.predict(found.vectors, top)
    rows = [{"path": _display(p), "label": r[0]["label"], "score": r[0]["score"], "top": r}
            for p, r in zip(found.paths, results, strict=True)]
    _report_failures(found)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in row["top"][1:])
        out.print(f"{printable(row['label']):<20} {row['score']:.3f}  {printable(row['path'])}"
                  + (f"  ({printable(others)})" if others else ""), markup=False)


# -- moderate ------------------------------------------------------------------------------------------
@handles_errors
def moderate(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(help="Images or folders (default: the whole library).")
                     ] = None,
    policy: Annotated[Path, typer.Option("--policy", help="TOML policy: categories, prompts, thresholds, actions.")
                      ] = ...,  # type: ignore[assignment]
    audit: Annotated[Path | None, typer.Option(
        "--audit", help="Append-only JSONL audit log (default: moderation-audit.jsonl in the library).")] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Do not write the audit log.")] = False,
    calibrate_dir: Annotated[Path | None, typer.Option(
        "--calibrate", help="Folder of labelled examples: <category>/ sub-folders (others = negatives). "
                            "Picks each category's threshold for --target-precision.")] = None,
    target_precision: Annotated[float, typer.Option("--target-precision", help="Precision --calibrate aims for.")
                                ] = 0.9,
    write_policy: Annotated[Path | None, typer.Option(
        "--write-policy", help="With --calibrate: write the policy with the new thresholds here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Moderate images against a policy: per image an action (allow/flag/reject) and the deciding scores."""
    from glimpse.moderation import Moderator, Policy, append_audit, calibrate, with_thresholds
    from glimpse.zeroshot import text_cache_for

    loaded = Policy.load(policy)
    with open_library_ctx(ctx) as lib:
        moderator = Moderator.build(loaded, lib.encoder, text_cache_for(lib.directory, lib.spec.key))
        if calibrate_dir is not None:
            import numpy as np

            from glimpse.datasets import read_image_folder

            data = read_image_folder(calibrate_dir)
            found = lib.vectors(data.paths)
            folder_of = {p: data.classes[y] for p, y in zip(data.paths, data.labels, strict=True)}
            names = [c.name for c in loaded.categories]
            truth = np.array([[folder_of[p] == n for n in names] for p in found.paths], dtype=bool)
            calibrated = calibrate(moderator, found.vectors, truth, target_precision)
            if write_policy is not None:
                write_policy.write_text(with_thresholds(loaded, calibrated).to_toml(), encoding="utf-8")
            if as_json:
                print_json({"target_precision": target_precision, "categories": calibrated})
            else:
                for c in calibrated:
                    detail = "target not reached; threshold unchanged"
                    if c["reached"]:
                        detail = (f"threshold {c['threshold']:.4f}  precision {c['precision']:.3f}  "
                                  f"recall {c['recall']:.3f}")
                    out.print(f"{c['category']:<20} {detail}", markup=False)
            return
        found = _vectors(lib, paths)
        results = moderator.decide(found.paths, found.vectors)
        if not no_audit:
            append_audit(audit or lib.directory / "moderation-audit.jsonl", results, loaded, lib.spec.key)
    _report_failures(found)
    if as_json:
        print_json(results)
        return
    for r in results:
        why = ", ".join(f"{name} {r['scores'][name]:.3f}" for name in r["triggered"])
        out.print(f"{r['action']:<7} {printable(r['path'])}" + (f"  ({printable(why)})" if why else ""), markup=False)


# -- dupes ----------------------------------------------------------------------------------------------
@handles_errors
def dupes(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(
        help="perceptual only: images/folders to check instead of the library.")] = None,
    level: Annotated[str, typer.Option("--level", help="exact (same bytes), perceptual (pHash), semantic (embedding).")
                     ] = "perceptual",
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="perceptual: max Hamming distance of 64 bits (default 10); semantic: min cosine "
                            "(default 0.95).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find duplicate images; each group keeps one representative (the largest image)."""
    from glimpse.dedup import find_duplicates

    if paths and level != "perceptual":
        raise UserInputError(f"--level {level} works on the library; paths can only be given with --level perceptual")
    with open_library_ctx(ctx, create=False) as lib:
        report = find_duplicates(lib, level, threshold, [str(p) for p in paths or []])
    data = report.to_dict()
    if as_json:
        print_json(data)
        return
    for group in data["groups"]:
        out.print(f"keep {printable(group['keep']['path'])}", markup=False)
        for dup in group["duplicates"]:
            out.print(f"  dup {printable(dup['path'])}  ({dup['score']:g})", markup=False)
    err.print(f"{len(data['groups'])} group(s), {data['duplicates']} duplicate(s) among {data['images']} images")


# -- eval -----------------------------------------------------------------------------------------------
@handles_errors
def eval_classify(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="ImageFolder: one sub-folder per class (its name is the label).")],
    templates: Annotated[str | None, typer.Option("--templates", help="Template set name or file.")] = None,
    probe: Annotated[Path | None, typer.Option("--probe", help="Also score this probe (zero-shot vs probe).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG: confusion matrix + per-class accuracy.")
                    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot top-1/top-5 accuracy, confusion matrix and per-class accuracy on an ImageFolder."""
    from glimpse.evaluate import evaluate_classification, plot_classification

    with open_library_ctx(ctx) as lib:
        report = evaluate_classification(lib, folder, templates=templates, probe=probe)
    if plot is not None:
        plot_classification(report, plot)
    if as_json:
        print_json(report)
        return
    for name in ("zero_shot", "probe"):
        if name in report:
            part = report[name]
            out.print(f"{name:<10} top-1 {part['top1']:.4f}  top-5 {part['top5']:.4f}  ({part['images']} images)",
                      markup=False)


@handles_errors
def eval_retrieval(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder with the images.")] = ...,  # type: ignore[assignment]
    captions: Annotated[Path, typer.Option(
        "--captions", help="COCO captions JSON, or Flickr-style txt (image.jpg#0<TAB>caption).")] = ...,  # type: ignore[assignment]
    ks: Annotated[str, typer.Option("--ks", help="Comma-separated K values for R@K and P@K.")] = "1,5,10",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of the Recall@K curves.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """text->image and image->text Recall@K, Precision@K, MRR and mAP."""
    from glimpse.datasets import read_coco_captions, read_flickr_captions
    from glimpse.evaluate import evaluate_retrieval, plot_retrieval

    try:
        k_values = sorted({int(k) for k in ks.split(",") if k.strip()})
    except ValueError as exc:
        raise UserInputError(f"--ks must be comma-separated integers, got {ks!r}") from exc
    if not k_values or k_values[0] < 1:
        raise UserInputError(f"--ks values must be at least 1, got {ks!r}")
    if captions.suffix.lower() == ".json":
        data = read_coco_captions(captions, images)
    else:
        data = read_flickr_captions(captions, images)
    with open_library_ctx(ctx) as lib:
        report = evaluate_retrieval(lib, data, k_values)
    if plot is not None:
        plot_retrieval(report, plot)
    if as_json:
        print_json(report)
        return
    for name in ("text_to_image", "image_to_text"):
        part = report[name]
        recall = "  ".join(f"R@{k} {v:.4f}" for k, v in part["recall"].items())
        out.print(f"{name:<14} {recall}  MRR {part['mrr']:.4f}  mAP {part['map']:.4f}", markup=False)


@handles_errors
def eval_multilabel(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder with the images.")] = ...,  # type: ignore[assignment]
    labels: Annotated[Path, typer.Option("--labels", help="YOLO label folder (<stem>.txt: 'class x y w h').")
                      ] = ...,  # type: ignore[assignment]
    classes: Annotated[Path, typer.Option("--classes", help="classes.yaml / data.yaml ('names:') or a .txt list.")
                       ] = ...,  # type: ignore[assignment]
    templates: Annotated[str | None, typer.Option("--templates", help="Template set name or file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot multi-label mAP on YOLO-labelled images (each class ranks the images)."""
    from glimpse.datasets import read_yolo
    from glimpse.evaluate import evaluate_multilabel

    data = read_yolo(images, labels, classes)
    with open_library_ctx(ctx) as lib:
        report = evaluate_multilabel(lib, data, templates=templates)
    if as_json:
        print_json(report)
        return
    out.print(f"mAP {report['map']:.4f} over {report['classes_with_positives']} classes, {report['images']} images",
              markup=False)


# -- train ----------------------------------------------------------------------------------------------
@handles_errors
def train_probe_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="ImageFolder with the labelled examples.")],
    output: Annotated[Path, typer.Argument(help="Probe file to write (e.g. probe.glimpse).")],
    kind: Annotated[str, typer.Option("--kind", help="linear (logistic regression) or prototype (class means).")
                    ] = "linear",
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
        label_of = dict(zip(folder.paths, folder.labels, strict=True))
        labels = np.array([label_of[p] for p in found.paths], dtype=np.int64)
        probe = train_probe(found.vectors, labels, folder.class_names(), lib.spec.key, lib.spec.name,
                            kind=kind)  # type: ignore[arg-type]
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
    """Add this module's commands to the glimpse app."""
    app.command("classify")(classify)
    app.command("moderate")(moderate)
    app.command("dupes")(dupes)
    eval_app.command("classify")(eval_classify)
    eval_app.command("retrieval")(eval_retrieval)
    eval_app.command("multilabel")(eval_multilabel)
    train_app.command("probe")(train_probe_cmd)
    train_app.command("clip")(train_clip_cmd)
    dataset_app.command("split")(dataset_split)
    dataset_app.command("stats")(dataset_stats)
    app.add_typer(eval_app, name="eval")
    app.add_typer(train_app, name="train")
    app.add_typer(dataset_app, name="dataset")
