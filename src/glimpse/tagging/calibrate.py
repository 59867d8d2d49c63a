"""Per-tag threshold calibration on labelled examples, for any tagger's probabilities.

For each tag with at least one positive example, the threshold is the score cut that maximises F1 on the
examples (ties: the higher cut, fewer false positives); tags without positives keep their threshold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError
from glimpse.tagging.base import Tagger, Vocabulary

if TYPE_CHECKING:
    from glimpse.datasets import MultiLabelSet


def best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """``(threshold, f1)`` for one tag: ``scores`` float[n], ``positive`` bool[n] (at least one true).

    A tag is predicted when ``score > threshold``; candidates are midpoints between sorted distinct scores.
    """
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order].astype(np.float64)
    tp = np.cumsum(p)
    predicted = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (predicted + p.sum())
    # Only cut between different scores: equal scores are predicted together.
    last_of_run = np.append(s[1:] < s[:-1], True)
    f1 = np.where(last_of_run, f1, -1.0)
    k = int(np.flatnonzero(f1 == f1.max())[0])
    below = s[k + 1] if k + 1 < len(s) else s[k] - 1e-3
    return float((s[k] + below) / 2), float(f1[k])


def calibrate(scores: np.ndarray, labels: np.ndarray, defaults: np.ndarray) -> np.ndarray:
    """Thresholds ``float32[C]`` from probabilities ``float[n, C]`` and ground truth ``bool[n, C]``."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise UserInputError(f"scores {list(scores.shape)} and labels {list(labels.shape)} must both be [n, C]")
    out = np.asarray(defaults, dtype=np.float32).copy()
    for c in np.flatnonzero(labels.any(axis=0)):
        out[c] = np.clip(best_f1_threshold(scores[:, c], labels[:, c])[0], 0.0, 1.0)
    return out


def save_thresholds(path: str | Path, vocab: Vocabulary, thresholds: np.ndarray, source: str,
                    columns: Sequence[int] | None = None, **extra: Any) -> None:
    """``{"source": …, "thresholds": {tag: value}, **extra}`` as JSON; ``columns`` limits which tags are written."""
    cols = range(len(vocab)) if columns is None else columns
    table = {vocab.names[i]: round(float(thresholds[i]), 6) for i in cols}
    data = {"source": source, "thresholds": table, **extra}
    Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def calibrate_tagger(tagger: Tagger, data: MultiLabelSet, *, batch_size: int = 16) -> dict[str, Any]:
    """Per-tag thresholds of ``tagger`` fitted on labelled examples; sets ``tagger.vocab.thresholds``.

    Returns ``{"source", "images", "columns", "tags": {name: {threshold, f1, positives}}, "not_in_vocabulary",
    "failed"}``; ``columns`` are the vocabulary columns of the labelled classes found (for ``save_thresholds``).
    """
    from glimpse.tagging.labelled import score_files, vocabulary_columns

    keep, cols, missing = vocabulary_columns(tagger, data.classes)
    scored = score_files(tagger, data.paths, batch_size=batch_size)
    if not len(scored.rows):
        raise UserInputError(f"none of the {len(data.paths)} images could be read (first: {scored.errors[0]})")
    scores, labels = scored.scores[:, cols], data.targets[np.ix_(scored.rows, keep)]
    fitted = calibrate(scores, labels, tagger.vocab.thresholds[cols])
    tagger.vocab.thresholds[cols] = fitted
    tags = {}
    for k, i in enumerate(cols):
        positives = int(labels[:, k].sum())
        predicted = scores[:, k] > fitted[k]
        hits = int((predicted & labels[:, k]).sum())
        f1 = 2 * hits / (int(predicted.sum()) + positives) if positives else None
        tags[tagger.vocab.names[i]] = {"threshold": round(float(fitted[k]), 6), "f1": f1, "positives": positives}
    return {"source": tagger.source, "images": len(scored.rows), "columns": cols, "tags": tags,
            "not_in_vocabulary": missing, "failed": scored.errors}


def apply_thresholds(path: str | Path, vocab: Vocabulary) -> int:
    """Set ``vocab.thresholds`` from a calibration file; returns how many tags it set."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        table = data["thresholds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserInputError(f"cannot read calibrated thresholds from {path} ({exc}); "
                             "expected the JSON written by calibration") from exc
    count = 0
    for name, value in table.items():
        i = vocab.index_of(name)
        if i is not None:
            vocab.thresholds[i] = float(value)
            count += 1
    return count
