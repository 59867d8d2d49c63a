"""Tagging: ``tag`` (tag images with CLIP or RAM / RAM++), ``tags`` (the library's tag facets),
``tag-calibrate`` (fit per-tag thresholds) and ``tag-export`` (RAM to ONNX for torch-free tagging).

``glimpse eval tags`` lives with the other evaluations (glimpse.commands.understand) and builds its tagger
with :func:`make_tagger` and the option types defined here. Top-level imports stay light: torch is imported
only when a tagger is built.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glimpse.commands.common import (
    err,
    handles_errors,
    make_progress,
    open_library_ctx,
    options_of,
    out,
    print_json,
)
from glimpse.display import printable
from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.tagging.base import Tagger


class TaggerKind(StrEnum):
    """``--tagger``: the CLIP tagger of any CLIP-family model, or a RAM / RAM++ checkpoint."""

    clip = "clip"
    ram = "ram"


TaggerOpt = Annotated[TaggerKind, typer.Option("--tagger", help="clip (any CLIP-family model) or ram (RAM / RAM++).")]
RamCheckpointOpt = Annotated[str | None, typer.Option(
    "--ram-checkpoint", help="RAM / RAM++ .pth file, or an ONNX export (directory or .onnx) for torch-free tagging.")]
VocabularyOpt = Annotated[str | None, typer.Option("--vocabulary", help="CLIP tagger vocabulary TSV file.")]
CalibratedOpt = Annotated[str | None, typer.Option("--calibrated", help="Calibrated thresholds JSON "
                                                                       "(from `glimpse tag-calibrate`).")]
TagListOpt = Annotated[str | None, typer.Option("--tag-list", help="RAM tag list (default: next to the checkpoint).")]
TagListChineseOpt = Annotated[str | None, typer.Option("--tag-list-chinese", help="RAM Chinese tag list.")]
TagThresholdsOpt = Annotated[str | None, typer.Option("--tag-thresholds", help="RAM per-class thresholds.")]


def make_tagger(ctx: typer.Context, kind: TaggerKind | str, ram_checkpoint: str | None, *, quiet: bool = False,
                **options: Any) -> Tagger:
    """``build_tagger`` with the global ``--device`` and ``--model`` (the CLIP tagger's encoder; default: the
    library's model). A first run shows a bar while the vocabulary is encoded, unless ``quiet``."""
    from glimpse.tagging.factory import build_tagger

    opts = options_of(ctx)
    encoder, cache_dir, progress = None, None, None
    if kind == TaggerKind.clip:
        from glimpse.library import library_model
        from glimpse.registry import load_encoder

        encoder = load_encoder(opts.model or library_model(opts.library), device=opts.device)
        cache_dir = str(opts.library_dir)
        progress = make_progress(quiet, "Tag vocabulary")
    return build_tagger(str(kind), encoder=encoder, ram_checkpoint=ram_checkpoint, device=opts.device,
                        cache_dir=cache_dir, progress=progress, **options)


@handles_errors
def tag(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders to tag.")],
    tagger: TaggerOpt = TaggerKind.clip,
    ram_checkpoint: RamCheckpointOpt = None,
    lang: Annotated[str, typer.Option("--lang", help="Tag names to show: en, zh or en,zh.")] = "en",
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="One threshold for every tag (overrides the per-class thresholds).")] = None,
    open_set: Annotated[str | None, typer.Option("--open-set", help='Extra tags, e.g. "corgi,espresso machine".')
                        ] = None,
    open_threshold: Annotated[float | None, typer.Option("--open-threshold",
                                                         help="Threshold of open-set tags (default 0.5).")] = None,
    exclude_tags: Annotated[str | None, typer.Option("--exclude-tags", help="Tags never to output (comma list).")
                            ] = None,
    only: Annotated[str | None, typer.Option("--only", help="Score only these tags (comma list).")] = None,
    vocabulary: VocabularyOpt = None,
    calibrated: CalibratedOpt = None,
    tag_list: TagListOpt = None,
    tag_list_chinese: TagListChineseOpt = None,
    tag_thresholds: TagThresholdsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {path, tags}.")] = False,
) -> None:
    """Tag images with a CLIP-family model (no extra weights) or a RAM / RAM++ checkpoint."""
    from glimpse.images import open_image
    from glimpse.pipeline import image_files
    from glimpse.tagging.base import check_threshold
    from glimpse.tagging.factory import parse_languages
    from glimpse.tagging.library_tags import parse_list

    languages = parse_languages(lang)
    check_threshold(threshold)
    files = image_files(paths)
    model = make_tagger(ctx, tagger, ram_checkpoint, quiet=as_json, languages=languages,
                         global_threshold=threshold is not None, open_set=parse_list(open_set),
                         open_threshold=open_threshold, vocabulary=vocabulary, calibrated=calibrated,
                         tag_list=tag_list, chinese_list=tag_list_chinese, thresholds=tag_thresholds)
    options = dict(threshold=threshold, exclude=parse_list(exclude_tags),
                   only=parse_list(only) if only else None, open_threshold=open_threshold)
    results, failures = [], 0
    for path in files:
        shown = os.fsencode(path).decode("utf-8", "replace")
        try:
            image = open_image(path, min_side=model.preprocess.min_side).image
        except Exception as exc:  # one bad file is reported, never stops the run
            failures += 1
            err.print(f"skipped {printable(path)}: {printable(str(exc))}", markup=False)
            continue
        tags = model.tag_images([image], **options)[0]
        results.append({"path": shown, "source": model.source,
                        "tags": [t.to_dict(languages) for t in tags]})
        if not as_json:
            names = [" ".join(n for n in ((t.name if "en" in languages else None),
                                          (t.name_zh if "zh" in languages else None)) if n) for t in tags]
            out.print(f"{printable(path)}: {printable(' | '.join(names))}", markup=False)
    if as_json:
        print_json(results)
    if failures and not results:
        raise typer.Exit(1)


@handles_errors
def tags(
    ctx: typer.Context,
    top: Annotated[int, typer.Option("-k", "--top", min=1, help="How many tags to list.")] = 50,
    top_n: Annotated[int | None, typer.Option("-n", min=1, hidden=True)] = None,  # the spelling before -k/--top
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {tag, count}.")] = False,
) -> None:
    """The most frequent tags of the library (facet counts)."""
    from glimpse.tagging.library_tags import facets

    with open_library_ctx(ctx, create=False) as lib:
        counts = facets(lib.catalog, top_n or top)
    if as_json:
        print_json(counts)
        return
    if not counts:
        err.print("no tags yet; run `glimpse index PATH --tags`")
    for item in counts:
        out.print(f"{item['count']:>7}  {item['tag']}", markup=False)


@handles_errors
def tag_calibrate(
    ctx: typer.Context,
    labels: Annotated[Path, typer.Argument(help="YOLO folder (images/, labels/, classes.yaml) or TSV file of "
                                                "'image<TAB>tag,tag' lines.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Thresholds JSON to write (for --calibrated).")],
    tagger: TaggerOpt = TaggerKind.clip,
    ram_checkpoint: RamCheckpointOpt = None,
    vocabulary: VocabularyOpt = None,
    tag_list: TagListOpt = None,
    tag_thresholds: TagThresholdsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-tag thresholds as JSON.")] = False,
) -> None:
    """Fit per-tag thresholds (best F1) on labelled images; use them with `glimpse tag --calibrated FILE`."""
    from glimpse.tagging.calibrate import calibrate_tagger, save_thresholds
    from glimpse.tagging.labelled import read_labelled

    if output.exists() and output.is_dir():
        raise UserInputError(f"--out {output} is a directory; give a file name such as thresholds.json")
    model = make_tagger(ctx, tagger, ram_checkpoint, quiet=as_json, vocabulary=vocabulary, tag_list=tag_list,
                         thresholds=tag_thresholds)
    report = calibrate_tagger(model, read_labelled(labels))
    columns = report.pop("columns")
    save_thresholds(output, model.vocab, model.vocab.thresholds, model.source, columns,
                    calibrated_on=str(labels), images=report["images"])
    report["out"] = str(output)
    if as_json:
        print_json(report)
        return
    for name, row in report["tags"].items():
        f1 = "  -  " if row["f1"] is None else f"{row['f1']:.3f}"
        out.print(f"{name:>24}  threshold {row['threshold']:.4f}  F1 {f1}  (n={row['positives']})", markup=False)
    err.print(f"wrote {len(columns)} thresholds to {printable(output)}", markup=False)


@handles_errors
def tag_export(
    checkpoint: Annotated[Path, typer.Argument(help="RAM / RAM++ .pth checkpoint (tag files next to it).")],
    output: Annotated[Path, typer.Argument(help="New directory for ram.onnx, ram.json, tag files, parity.json.")],
    int8: Annotated[bool, typer.Option("--int8", help="Dynamic int8 weights (kept only if tags agree).")] = False,
    tag_list: TagListOpt = None,
    tag_list_chinese: TagListChineseOpt = None,
    tag_thresholds: TagThresholdsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export summary as JSON.")] = False,
) -> None:
    """Export a RAM / RAM++ tagger to ONNX (verified against torch) for torch-free `glimpse tag`."""
    from glimpse.tagging.onnx_export import export_ram

    result = export_ram(checkpoint, output, precision="int8" if int8 else "fp32", tag_list=tag_list,
                        chinese_list=tag_list_chinese, thresholds=tag_thresholds)
    if as_json:
        print_json(result)
        return
    parity = result["parity"]
    out.print(f"wrote {printable(result['directory'])} ({result['precision']}): {parity['identical_tag_sets']}/"
              f"{parity['samples']} identical tag sets, max |logit diff| {parity['max_abs_logit_diff']:.2e}",
              markup=False)


def register(app: typer.Typer) -> None:
    """Attach tag, tags, tag-calibrate and tag-export."""
    app.command("tag")(tag)
    app.command("tags")(tags)
    app.command("tag-calibrate")(tag_calibrate)
    app.command("tag-export")(tag_export)
