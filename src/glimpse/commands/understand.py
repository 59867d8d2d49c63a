"""Understanding what is in the images: ``classify``, ``moderate``, ``dupes`` and ``eval classify|retrieval|
multilabel|tags`` (how well those answers match labelled data).

Only parsing, calling the library and formatting live here; imports of the feature modules happen inside
the commands so that ``glimpse --help`` stays fast.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glimpse.commands.common import (
    App,
    JsonOpt,
    err,
    handles_errors,
    open_library_ctx,
    out,
    print_json,
    print_skipped,
)
from glimpse.commands.tagging import (
    CalibratedOpt,
    RamCheckpointOpt,
    TaggerKind,
    TaggerOpt,
    TagListOpt,
    TagThresholdsOpt,
    VocabularyOpt,
    make_tagger,
)
from glimpse.display import printable
from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.library import ImageVectors, Library


def _vectors(lib: Library, paths: list[Path] | None) -> ImageVectors:
    """Vectors of the given files/folders, or of the whole library when none are given."""
    return lib.vectors([str(p) for p in paths] if paths else None)


def _display(path: str) -> str:
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
    top: Annotated[int, typer.Option("-k", "--top", min=1, help="Labels shown per image.")] = 3,
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
    print_skipped(found.errors)
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
    policy: Annotated[Path, typer.Option(
        "--policy", help="TOML policy file: categories, prompts, thresholds, actions (format above).")
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
    r"""Moderate images against a policy: per image an action (allow/flag/reject) and the deciding scores.

    The policy is a TOML file with one [\[category]] table per category; a
    ready-to-edit example is examples/moderation-policy.toml in the sources:

        templates = "photo"        # optional; default: prompts as written
        [\[category]]
        name = "weapons"
        positive = ["a gun", "a rifle"]  # what the category looks like
        negative = ["a toy gun"]   # look-alikes; default ["a photo"]
        threshold = 0.7            # triggers at or above, 0..1; default 0.5
        action = "reject"          # flag (the default) or reject

    The score is the two-way softmax of the best positive against the best
    negative prompt (0.5: as much like a look-alike as like the category).
    An image gets the most severe action among its triggered categories
    (reject > flag > allow); each decision goes to the audit log.
    --calibrate picks the thresholds from labelled examples.
    """
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
            # lib.vectors lists files by absolute path; the folder may have been given relative
            folder_of = {os.path.abspath(p): data.classes[y] for p, y in zip(data.paths, data.labels, strict=True)}
            names = [c.name for c in loaded.categories]
            truth = np.array([[folder_of[os.path.abspath(p)] == n for n in names] for p in found.paths], dtype=bool)
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
    print_skipped(found.errors)
    if as_json:
        print_json(results)
        return
    for r in results:
        why = ", ".join(f"{name} {r['scores'][name]:.3f}" for name in r["triggered"])
        out.print(f"{r['action']:<7} {printable(r['path'])}" + (f"  ({printable(why)})" if why else ""), markup=False)


# -- dupes ----------------------------------------------------------------------------------------------
class DupesLevel(StrEnum):
    """``dupes --level``: what makes two images duplicates."""

    exact = "exact"
    perceptual = "perceptual"
    semantic = "semantic"


@handles_errors
def dupes(
    ctx: typer.Context,
    paths: Annotated[list[Path] | None, typer.Argument(
        help="perceptual only: images/folders to check instead of the library.")] = None,
    level: Annotated[DupesLevel, typer.Option(
        "--level", help="exact (same bytes), perceptual (pHash), semantic (embedding).")] = DupesLevel.perceptual,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="perceptual: max Hamming distance of 64 bits (default 10); semantic: min cosine "
                            "(default 0.95).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find duplicate images; each group keeps one representative (the largest image)."""
    from glimpse.dedup import find_duplicates

    if paths and level != DupesLevel.perceptual:
        raise UserInputError(f"--level {level.value} works on the library; paths can only be given with --level "
                             "perceptual")
    with open_library_ctx(ctx, create=False) as lib:
        report = find_duplicates(lib, level.value, threshold, [str(p) for p in paths or []])
    data = report.to_dict()
    if as_json:
        print_json(data)
        return
    for group in data["groups"]:
        out.print(f"keep {printable(group['keep']['path'])}", markup=False)
        for dup in group["duplicates"]:
            out.print(f"  dup {printable(dup['path'])}  ({dup['score']:g})", markup=False)
    err.print(f"{len(data['groups'])} group(s), {data['duplicates']} duplicate(s) among {data['images']} images")
    print_skipped(data["failed"])


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
    print_skipped(report["failed"])
    for line in classification_table(report):
        out.print(line, markup=False)


def classification_table(report: dict[str, Any]) -> list[str]:
    """The plain-text table of an ``evaluate_classification`` report: a row per class (its images and
    accuracy, zero-shot and probe side by side), then the overall top-1 and top-5 rows."""
    methods = [name for name in ("zero_shot", "probe") if name in report]
    parts = [report[name] for name in methods]
    classes: list[str] = parts[0]["classes"]
    counts = [sum(row) for row in parts[0]["confusion"]]
    width = max([len("overall top-1"), *(len(printable(c)) for c in classes)])
    titles = {"zero_shot": "zero-shot"}
    if "probe" in report:
        titles["probe"] = f"probe ({report['probe']['kind']})" if report["probe"].get("kind") else "probe"
    column = max(10, *(len(t) for t in titles.values()))

    def cell(value: float | None) -> str:
        return f"{'-' if value is None else f'{value:.4f}':>{column}}"

    head = f"{'class':<{width}}  {'images':>6}  " + "  ".join(f"{titles[m]:>{column}}" for m in methods)
    lines = [head, "-" * len(head)]
    for name, count in zip(classes, counts, strict=True):
        lines.append(f"{printable(name):<{width}}  {count:>6}  "
                     + "  ".join(cell(part["per_class"][name]) for part in parts))
    lines.append("-" * len(head))
    for k in ("top1", "top5"):
        label = f"overall top-{k[-1]}"
        lines.append(f"{label:<{width}}  {parts[0]['images']:>6}  " + "  ".join(cell(part[k]) for part in parts))
    return lines


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


@handles_errors
def eval_tags(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Argument(help="YOLO folder (images/, labels/, classes.yaml) or TSV file of "
                                                "'image<TAB>tag,tag' lines.")],
    tagger: TaggerOpt = TaggerKind.clip,
    ram_checkpoint: RamCheckpointOpt = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="One threshold for every tag (overrides the per-class thresholds).")] = None,
    vocabulary: VocabularyOpt = None,
    calibrated: CalibratedOpt = None,
    tag_list: TagListOpt = None,
    tag_thresholds: TagThresholdsOpt = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also print every class's AP, P and R.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Tag evaluation: mAP and per-class precision / recall at the tagger's thresholds on labelled images."""
    from glimpse.tagging.evaluate_tags import evaluate_tags

    model = make_tagger(ctx, tagger, ram_checkpoint, quiet=as_json, global_threshold=threshold is not None,
                        vocabulary=vocabulary, calibrated=calibrated, tag_list=tag_list, thresholds=tag_thresholds)
    report = evaluate_tags(model, labels, threshold=threshold)
    if as_json:
        print_json(report)
        return

    def pct(value: float | None) -> str:
        return "  -  " if value is None else f"{100 * value:5.1f}"

    out.print(f"{report['source']} on {report['dataset']}: {report['images']} images, "
              f"{report['classes_with_positives']}/{report['classes']} classes with positives", markup=False)
    out.print(f"mAP {pct(report['map'])}   precision {pct(report['precision'])}   "
              f"recall {pct(report['recall'])}   F1 {pct(report['f1'])}", markup=False)
    if per_class:
        for name, row in report["per_class"].items():
            out.print(f"{name:>24}  AP {pct(row['ap'])}  P {pct(row['precision'])}  R {pct(row['recall'])}"
                      f"  (n={row['positives']}, t={row['threshold']:.3f})", markup=False)
    if report["not_in_vocabulary"]:
        err.print(f"not in the tagger's vocabulary (skipped): {', '.join(report['not_in_vocabulary'])}",
                  markup=False)
    for failure in report["failed"]:
        err.print(f"skipped {printable(failure['path'])}: {printable(failure['reason'])}", markup=False)


def register(app: typer.Typer) -> None:
    """Attach classify, moderate, dupes and the ``eval`` group (classify, retrieval, multilabel, tags)."""
    app.command("classify")(classify)
    app.command("moderate")(moderate)
    app.command("dupes")(dupes)
    eval_app = App(help="Measure classification, retrieval and tagging quality on your own data.",
                           no_args_is_help=True)
    eval_app.command("classify")(eval_classify)
    eval_app.command("retrieval")(eval_retrieval)
    eval_app.command("multilabel")(eval_multilabel)
    eval_app.command("tags")(eval_tags)
    app.add_typer(eval_app, name="eval")
