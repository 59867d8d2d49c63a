"""Tag evaluation on multi-label ground truth: mAP and per-class precision / recall at the thresholds.

Ranking quality (AP per class, mAP over classes with a positive) comes from ``glimpse.evaluate``. Decisions
are the tagger's own: a tag is predicted when its probability is strictly above its threshold (per class, or
the one global ``threshold``), exactly as ``glimpse tag`` decides. Precision of a class that is never
predicted, and recall of a class without positives, are undefined and reported as ``null``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError
from glimpse.evaluate import average_precision, mean_average_precision
from glimpse.tagging.base import check_threshold

if TYPE_CHECKING:
    from glimpse.datasets import MultiLabelSet
    from glimpse.tagging.base import Tagger


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def tag_metrics(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                names: Sequence[str]) -> dict[str, Any]:
    """Metrics of probabilities ``float[n, C]`` against ground truth ``bool[n, C]`` at ``thresholds`` ``float[C]``.

    Returns ``map`` (mean AP over classes with a positive), micro ``precision`` / ``recall`` / ``f1`` over all
    (image, class) decisions, and ``per_class`` ``{name: {ap, precision, recall, tp, fp, fn, positives,
    threshold}}``.
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=bool)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != targets.shape or thresholds.shape != (scores.shape[1],) \
            or len(names) != scores.shape[1]:
        raise UserInputError(f"need scores and targets [n, C], C thresholds and C names; got {scores.shape}, "
                             f"{targets.shape}, {thresholds.shape}, {len(names)}")
    predicted = scores > thresholds[None, :]
    tp = (predicted & targets).sum(axis=0)
    fp = (predicted & ~targets).sum(axis=0)
    fn = (~predicted & targets).sum(axis=0)
    per_class = {}
    for j, name in enumerate(names):
        has = bool(targets[:, j].any())
        per_class[name] = {
            "ap": average_precision(scores[:, j], targets[:, j]) if has else None,
            "precision": _ratio(tp[j], tp[j] + fp[j]),
            "recall": _ratio(tp[j], tp[j] + fn[j]),
            "tp": int(tp[j]), "fp": int(fp[j]), "fn": int(fn[j]),
            "positives": int(targets[:, j].sum()),
            "threshold": round(float(thresholds[j]), 6),
        }
    precision = _ratio(tp.sum(), tp.sum() + fp.sum())
    recall = _ratio(tp.sum(), tp.sum() + fn.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if tp.sum() == 0 else None)
    return {
        "images": int(scores.shape[0]),
        "classes": len(names),
        "classes_with_positives": int(targets.any(axis=0).sum()),
        "map": mean_average_precision(scores, targets),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "per_class": per_class,
    }


def evaluate_tagger(tagger: Tagger, data: MultiLabelSet, *, threshold: float | None = None,
                    batch_size: int = 16) -> dict[str, Any]:
    """Score ``data``'s images with ``tagger`` and measure it on the labelled classes it has in its vocabulary.

    ``threshold`` (one value for every class) overrides the tagger's per-class thresholds, as in ``glimpse tag``.
    Classes the vocabulary lacks are listed under ``not_in_vocabulary``; unreadable images under ``failed``.
    """
    from glimpse.tagging.labelled import score_files, vocabulary_columns

    check_threshold(threshold)
    keep, cols, missing = vocabulary_columns(tagger, data.classes)
    scored = score_files(tagger, data.paths, batch_size=batch_size)
    if not len(scored.rows):
        raise UserInputError(f"none of the {len(data.paths)} images could be read (first: {scored.errors[0]})")
    cuts = tagger.vocab.thresholds[cols] if threshold is None else np.full(len(cols), threshold)
    report = tag_metrics(scored.scores[:, cols], data.targets[np.ix_(scored.rows, keep)], cuts,
                         [tagger.vocab.names[i] for i in cols])
    return {"source": tagger.source, "threshold": threshold, **report,
            "not_in_vocabulary": missing, "failed": scored.errors}


def evaluate_tags(tagger: Tagger, labels: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """``evaluate_tagger`` on a YOLO folder or TSV labels file (see ``glimpse.tagging.labelled``)."""
    from glimpse.tagging.labelled import read_labelled

    report = evaluate_tagger(tagger, read_labelled(labels), **options)
    return {"dataset": str(labels), **report}
