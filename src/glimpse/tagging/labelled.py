"""Labelled examples for tag evaluation and calibration: images with sets of tag names, and scoring them.

Two formats are read into a ``glimpse.datasets.MultiLabelSet`` (``targets`` is ``bool[n_images, n_classes]``):

* a YOLO folder — ``images/``, ``labels/<stem>.txt`` (``class x y w h`` lines), ``classes.yaml`` — e.g.
  ``../shared/data/coco128``. COCO class names are mapped to glimpse vocabulary names (``COCO_TAG_NAMES``:
  COCO's "mouse" is a computer mouse, not the animal);
* a TSV file — ``image-path<TAB>tag,tag,…`` per line (paths relative to the file), ``#`` comments; an empty
  tag field makes a negative example.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glimpse.datasets import MultiLabelSet, read_yolo
from glimpse.errors import ImageError, UserInputError

if TYPE_CHECKING:
    from glimpse.tagging.base import Tagger

# COCO class name -> glimpse vocabulary name, where they differ.
COCO_TAG_NAMES: dict[str, str] = {
    "mouse": "computer mouse",
    "tv": "television",
    "cell phone": "mobile phone",
    "sports ball": "ball",
    "couch": "sofa",
    "skis": "ski",
    "remote": "remote control",
    "hair drier": "hair dryer",
}


def read_tsv_labels(path: str | os.PathLike[str]) -> MultiLabelSet:
    """``image<TAB>tag,tag`` lines -> a ``MultiLabelSet`` whose classes are the tag names, in first-seen order."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read the labels file {path} ({exc})") from exc
    rows: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        image, sep, tags = line.partition("\t")
        if not sep or not image.strip():
            raise UserInputError(f"{path}:{number}: expected 'image<TAB>tag,tag,…', found {line!r}")
        file = (path.parent / image.strip()).resolve()
        if not file.is_file():
            raise UserInputError(f"{path}:{number}: image {file} does not exist")
        rows.append((str(file), [t.strip() for t in tags.split(",") if t.strip()]))
    if not rows:
        raise UserInputError(f"{path} lists no images")
    classes = list(dict.fromkeys(t for _, tags in rows for t in tags))
    column = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(rows), len(classes)), dtype=bool)
    for row, (_, tags) in enumerate(rows):
        targets[row, [column[t] for t in tags]] = True
    return MultiLabelSet(classes, [r[0] for r in rows], targets)


def read_labelled(path: str | os.PathLike[str], names: dict[str, str] | None = None) -> MultiLabelSet:
    """A YOLO folder or a TSV labels file; class names renamed by ``names`` (default ``COCO_TAG_NAMES``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        classes = next((path / n for n in ("classes.yaml", "data.yaml", "classes.txt") if (path / n).is_file()), None)
        if classes is None or not (path / "images").is_dir() or not (path / "labels").is_dir():
            raise UserInputError(f"{path} is not a YOLO folder: expected images/, labels/ and classes.yaml; "
                                 "or give a TSV file of 'image<TAB>tag,tag' lines")
        data = read_yolo(path / "images", path / "labels", classes)
    elif path.is_file():
        data = read_tsv_labels(path)
    else:
        raise UserInputError(f"{path} does not exist; give a YOLO folder or a TSV labels file")
    rename = COCO_TAG_NAMES if names is None else names
    data.classes = [rename.get(c, c) for c in data.classes]
    return data


@dataclass
class ScoredFiles:
    """Tagger probabilities for the readable files: ``scores`` ``float32[n_ok, C]``, ``rows`` their indices."""

    scores: np.ndarray
    rows: np.ndarray  # int64[n_ok]: index of each scored file in the input list
    errors: list[dict[str, str]] = field(default_factory=list)


def score_files(tagger: Tagger, paths: Sequence[str], *, batch_size: int = 16) -> ScoredFiles:
    """Decode, preprocess and score ``paths`` in batches; an unreadable file is reported, never fatal."""
    from glimpse.images import open_image
    from glimpse.preprocess import preprocess_image

    pre = tagger.preprocess
    parts, rows, errors = [], [], []
    for start in range(0, len(paths), batch_size):
        pixels = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                pixels.append(preprocess_image(open_image(paths[i], min_side=pre.min_side).image, pre))
                rows.append(i)
            except ImageError as exc:
                errors.append({"path": paths[i], "reason": str(exc)})
        if pixels:
            parts.append(tagger.score_pixels(np.stack(pixels)))
    scores = np.concatenate(parts) if parts else np.zeros((0, len(tagger.vocab)), dtype=np.float32)
    return ScoredFiles(scores, np.asarray(rows, dtype=np.int64), errors)


def vocabulary_columns(tagger: Tagger, classes: Sequence[str]) -> tuple[list[int], list[int], list[str]]:
    """``(label columns, tagger columns, missing names)``: each labelled class found in the tagger's vocabulary."""
    keep, cols, missing = [], [], []
    for j, name in enumerate(classes):
        i = tagger.vocab.index_of(name)
        if i is None:
            missing.append(name)
        else:
            keep.append(j)
            cols.append(i)
    if not keep:
        raise UserInputError(f"none of the labelled classes {list(classes)[:8]} is in the tagger's vocabulary; "
                             "rename them to vocabulary tags or add them with --open-set")
    return keep, cols, missing
