"""The everyday commands: ``index``, ``search``, ``similar``, ``status``, ``remove``, ``rebuild-index``.

What a user does with a library day to day: put images in, find them, see what is there, take them out.
``index --engine ray`` is parsed here and handed to :mod:`glimpse.commands.scale`, which prints the Ray run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from glimpse.commands.common import (
    AfterFilter,
    BeforeFilter,
    CameraFilter,
    FolderFilter,
    ItemType,
    MinScore,
    NearFilter,
    NoTagFilter,
    PerVideo,
    SortOrder,
    TagFilter,
    TopK,
    err,
    handles_errors,
    make_progress,
    metadata_filter,
    open_library_ctx,
    out,
    print_errors,
    print_json,
    shown,
)
from glimpse.commands.ocr import OcrModel, TextFilter, TextWeight
from glimpse.commands.scale import index_with_ray
from glimpse.display import printable
from glimpse.errors import UserInputError
from glimpse.items import DEFAULT_PER_VIDEO
from glimpse.ocr.text_index import DEFAULT_TEXT_WEIGHT

if TYPE_CHECKING:
    from glimpse.library import Hit
    from glimpse.video import SamplingRules

HitsJson = Annotated[bool, typer.Option("--json", help="Print a JSON list of {path, score, id, ...}.")]


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
        "--engine", metavar="local|ray",
        help="local (this process) or ray (Ray Data; PATH may be a list file of paths/URLs).")] = "local",
    address: Annotated[str | None, typer.Option(
        "--address", help="Ray cluster address with --engine ray (auto: the running cluster).")] = None,
    encoders: Annotated[int | None, typer.Option(
        "--encoders", min=1, help="Encoder actors with --engine ray (default: one per GPU, else half the CPUs).")
                        ] = None,
    with_tags: Annotated[bool, typer.Option(
        "--tags", help="Also tag new and changed images (CLIP tagger of the library's model).")] = False,
    with_ocr: Annotated[bool, typer.Option(
        "--ocr", help="Also read the text in images (OCR) whose content the OCR model has not read yet, for "
                      "`search text:\"…\"`, `--text` and fused searches; already indexed images are not "
                      "encoded again.")] = False,
    ocr_model: OcrModel = None,
    wait: Annotated[float, typer.Option(
        "--wait", min=0.0, help="Seconds to wait for another writer (e.g. a `glimpse watch` run) to finish "
                                "instead of stopping at once.")] = 0.0,
    max_frames: Annotated[int, typer.Option(
        "--max-frames", min=1, help="Most frames sampled from one video (a long video spreads them out).")] = 120,
    frame_interval: Annotated[str, typer.Option(
        "--frame-interval", metavar="MIN:MAX", help="Seconds between a video's sampled frames: at least MIN "
                                                     "(scene changes closer are skipped), at most MAX.")] = "2:30",
) -> None:
    """Index folders and files: photos (JPEG, PNG, HEIC, RAW …) and videos (frames sampled at scene changes).

    New and changed files are encoded, moved ones re-linked, deleted ones dropped."""
    from glimpse.vectors.select import parse_bytes

    budget = parse_bytes(memory_budget) if memory_budget else None
    with_ocr = with_ocr or ocr_model is not None
    if engine == "ray":
        if with_ocr:
            raise UserInputError("--ocr works with --engine local only; run `glimpse index --ocr` on the folders")
        index_with_ray(ctx, paths, address=address, batch_size=batch_size, memory_budget=budget, as_json=as_json,
                       workers=workers, encoders=encoders, max_megapixels=max_megapixels, with_tags=with_tags)
        return
    if engine != "local":
        raise UserInputError(f"--engine {engine!r}: give 'local' (the default) or 'ray'")
    rules = video_rules(max_frames, frame_interval)  # bad values fail before the library opens
    with open_library_ctx(ctx) as lib:
        lib.lock_wait = wait
        label = "Indexing + text" if with_ocr else "Indexing"
        report = lib.index([str(p) for p in paths], batch_size=batch_size, workers=workers,
                           max_megapixels=max_megapixels, progress=make_progress(as_json, label),
                           memory_budget=budget, ocr=with_ocr, ocr_model=ocr_model, video_rules=rules)
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
    if report.videos:
        err.print(f"[bold]Videos[/]: {report.videos} sampled, {report.frames} frames encoded")
    if report.ocr_model is not None:
        err.print(f"[bold]Read text[/] of {report.ocr_read} image(s) ({report.ocr_lines} lines), "
                  f"{report.ocr_copied} copied from identical images, {report.ocr_failed} failed "
                  f"({shown(report.ocr_model)})")
    for reason, count in report.missing_support.items():
        err.print(f"[yellow]{count} file(s) skipped:[/] {shown(reason)}")
    print_errors(report.errors)
    print_errors(report.warnings, verb="warning")


def video_rules(max_frames: int, frame_interval: str) -> SamplingRules:
    """The ``SamplingRules`` of ``--max-frames`` and ``--frame-interval MIN:MAX``."""
    from glimpse.video import SamplingRules

    try:
        low, high = (float(part) for part in frame_interval.split(":"))
    except ValueError:
        raise UserInputError(f"--frame-interval {frame_interval!r}: give MIN:MAX in seconds, e.g. 2:30") from None
    return SamplingRules(min_interval_s=low, max_interval_s=high, max_frames=max_frames)


def clock(seconds: float) -> str:
    """``75.5`` → ``"1:15.5"``; ``3725`` → ``"1:02:05"``: a time into a video as players show it."""
    tenths_total = round(seconds * 10)
    whole, tenth = divmod(tenths_total, 10)
    tenths = f".{tenth}" if tenth else ""
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}") + tenths


def print_hits(hits: list[Hit], as_json: bool) -> None:
    """Hits as ``score  path`` lines on stdout (or a JSON list); "no results" on stderr when empty."""
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    if not hits:
        err.print("no results")
        return
    for hit in hits:
        # The reason and the matched line only when text played a part: CLIP-only output stays "score  path".
        said = f"  [{hit.match}: {printable(hit.snippet)}]" if hit.snippet is not None else ""
        if hit.time is not None:  # a video: where its best frame is, then its other good frames
            also = [clock(t) for t, _, _ in hit.frames[1:]]
            said = f" @ {clock(hit.time)}" + (f" (also {', '.join(also)})" if also else "") + said
        out.print(f"{hit.to_dict()['score']:.4f}  {printable(hit.path)}{said}", markup=False)


@handles_errors
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(
        help="Text to look for. Combine terms with + and -, weight them as 2:term, "
             "e.g. \"beach +sunset -people\". A term naming an image file searches by that image. "
             "text:word or text:\"a phrase\" matches the text in the images (after `index --ocr`): alone, a "
             "full-text search; with other terms, a filter on CLIP's ranking (as --text). A plain query is "
             "also matched against the images' text, and the two rankings are fused.")] = "",
    k: TopK = 10,
    image: Annotated[list[Path] | None, typer.Option("--image", "-i", help="Add an image term (repeatable).")] = None,
    min_score: MinScore = None,
    as_json: HitsJson = False,
    tag: TagFilter = None,
    no_tag: NoTagFilter = None,
    folder: FolderFilter = None,
    lang: Annotated[str | None, typer.Option(
        "--lang", help="Language of the query (zh, de, pt-BR…) for models that read a language token "
                       "(NLLB-CLIP); default: the locale's.")] = None,
    text: TextFilter = None,
    text_weight: TextWeight = DEFAULT_TEXT_WEIGHT,
    after: AfterFilter = None,
    before: BeforeFilter = None,
    camera: CameraFilter = None,
    near: NearFilter = None,
    sort: SortOrder = "score",
    kind: ItemType = None,
    per_video: PerVideo = DEFAULT_PER_VIDEO,
) -> None:
    """Search the library by text, by image, or both (see SEARCH_HELP)."""
    where = metadata_filter(after, before, camera, near)  # a malformed date fails before the library opens
    with open_library_ctx(ctx, create=False) as lib:
        hits = lib.search(query, k, images=[str(p) for p in image or []], min_score=min_score, tags=tag,
                          no_tags=no_tag, folder=folder, lang=lang, text=text, text_weight=text_weight,
                          where=where, sort=sort, kind=kind, per_video=per_video)
    print_hits(hits, as_json)


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
    after: AfterFilter = None,
    before: BeforeFilter = None,
    camera: CameraFilter = None,
    near: NearFilter = None,
    kind: ItemType = None,
    per_video: PerVideo = DEFAULT_PER_VIDEO,
) -> None:
    """Find the images (and video frames) most like IMAGE."""
    target: str | int = int(image) if image.isdigit() and not os.path.exists(image) else image
    where = metadata_filter(after, before, camera, near)
    with open_library_ctx(ctx, create=False) as lib:
        hits = lib.similar(target, k, min_score=min_score, tags=tag, no_tags=no_tag, folder=folder, where=where,
                           kind=kind, per_video=per_video)
    print_hits(hits, as_json)


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
    if info.videos.get("videos"):
        out.print(f"videos    {info.videos['videos']} indexed, {info.videos['frames']} frames searchable", markup=False)
    out.print(f"vectors   {info.vectors} stored, {info.index_vectors} in the index ({info.index_kind})", markup=False)
    if info.ocr.get("images") or info.ocr.get("failed"):
        out.print(f"text      {info.ocr['images']} images read by OCR, {info.ocr['with_text']} with text "
                  f"({info.ocr['lines']} lines), {info.ocr['failed']} failed", markup=False)
    for root in info.roots:
        out.print(f"root      {printable(root)}", markup=False)
    for m in info.models:
        if m["key"] != info.model_key:
            out.print(f"also      {printable(m['name'])} ({m['embeddings']} vectors, key {m['key']})", markup=False)
    for item in info.recent_errors[:10]:
        out.print(f"error     {printable(item['path'])}: {printable(item['reason'])}", markup=False)


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


SEARCH_HELP = (
    "Search the library by text, by image, or both; and by the text in the images (after `index --ocr`).\n\n"
    "Hits found through their text show the matched line: `score  path  \\[ocr|both: line]` (JSON: \"match\" is "
    "clip, ocr or both, \"snippet\" the line). Text matching ignores case, full-/half-width forms and spaces, "
    "and matches inside words; terms under 3 characters (e.g. 出口) are found by a scan instead of the trigram "
    "index."
)


def register(app: typer.Typer) -> None:
    """Attach index, search, similar, status, remove and rebuild-index."""
    app.command("index")(index)
    app.command("search", help=SEARCH_HELP)(search)
    app.command("similar")(similar)
    app.command("status")(status)
    app.command("remove")(remove)
    app.command("rebuild-index")(rebuild_index)
