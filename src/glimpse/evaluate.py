"""Evaluation metrics (numpy), classification / retrieval evaluation over a library, and plots.

Metric conventions (the ones CLIP papers report):
- ``recall_at_k``: fraction of queries with at least one relevant item in their top ``k``.
- ``precision_at_k``: mean over queries of (relevant items in the top ``k``) / ``k``.
- ``mrr``: mean over queries of 1 / rank of the first relevant item (0 when none is retrieved).
- ``mean_average_precision``: mean over columns (classes, or queries for retrieval) of average precision,
  columns without any positive skipped.
Ties in scores are broken by index (stable sort), so results are deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.library import Library

DEFAULT_KS = (1, 5, 10)


def _ranking(scores: np.ndarray) -> np.ndarray:
    """``int[q, g]``: item indices of each row, best score first (stable on ties)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")


def _check_pair(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, relevant = np.asarray(scores, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if scores.ndim != 2 or scores.shape != relevant.shape:
        raise UserInputError(
            f"scores and relevance must both be [queries, items]; got {scores.shape}, {relevant.shape}"
        )
    return scores, relevant


def _sorted_relevance(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``bool[q, g]``: relevance of each query's items in ranked order."""
    scores, relevant = _check_pair(scores, relevant)
    return np.take_along_axis(relevant, _ranking(scores), axis=1)


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Fraction of queries (rows of ``float[q, g]`` scores) with a relevant item (``bool[q, g]``) in the top k."""
    ranked = _sorted_relevance(scores, relevant)
    return float(ranked[:, :k].any(axis=1).mean())


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean over queries of the fraction of the top ``k`` items that are relevant."""
    ranked = _sorted_relevance(scores, relevant)
    return float(ranked[:, :k].sum(axis=1).mean() / k)


def mrr(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Mean reciprocal rank of the first relevant item (0 for a query with none)."""
    ranked = _sorted_relevance(scores, relevant)
    has = ranked.any(axis=1)
    first = ranked.argmax(axis=1)
    return float(np.where(has, 1.0 / (first + 1), 0.0).mean())


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one ranking: ``float[g]`` scores, ``bool[g]`` relevance; mean of precision at each hit.

    Raises when nothing is relevant (AP is undefined there).
    """
    scores, relevant = np.asarray(scores, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if not relevant.any():
        raise UserInputError("average precision needs at least one relevant item")
    ranked = relevant[np.argsort(-scores, kind="stable")]
    hits = np.cumsum(ranked)
    positions = np.arange(1, len(ranked) + 1)
    return float((hits / positions)[ranked].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over the columns of ``float[n, c]`` scores and ``bool[n, c]`` targets (multi-label: per class,
    ranking the images); columns without a positive are skipped."""
    scores, targets = _check_pair(scores, targets)
    aps = [average_precision(scores[:, j], targets[:, j]) for j in range(scores.shape[1]) if targets[:, j].any()]
    if not aps:
        raise UserInputError("no class has a positive example; mAP is undefined")
    return float(np.mean(aps))


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows of ``float[n, c]`` whose true class ``labels[i]`` is among the ``k`` best."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(labels) or not len(labels):
        raise UserInputError(f"need [n, c] scores and n labels; got {scores.shape} and {len(labels)}")
    top = _ranking(scores)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``int64[c, c]``: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """``float64[c]`` accuracy of each true class (NaN for a class without examples)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def classification_report(scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """top-1/top-5 accuracy, confusion matrix and per-class accuracy of ``float[n, c]`` scores."""
    matrix = confusion_matrix(np.asarray(scores).argmax(axis=1), labels, len(names))
    per_class = per_class_accuracy(matrix)
    return {
        "images": len(labels),
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, min(5, len(names))),
        "per_class": {n: (None if np.isnan(a) else float(a)) for n, a in zip(names, per_class, strict=True)},
        "confusion": matrix.tolist(),
        "classes": list(names),
    }


def retrieval_report(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """R@K, P@K, MRR and mAP of ``float[q, g]`` query-by-item scores against ``bool[q, g]`` relevance."""
    scores, relevant = _check_pair(scores, relevant)
    return {
        "queries": int(scores.shape[0]),
        "items": int(scores.shape[1]),
        "recall": {str(k): recall_at_k(scores, relevant, k) for k in ks},
        "precision": {str(k): precision_at_k(scores, relevant, k) for k in ks},
        "mrr": mrr(scores, relevant),
        # Per query AP (queries without a relevant item skipped): the transpose puts queries in columns.
        "map": mean_average_precision(scores.T, relevant.T),
    }


# -- evaluations over a library ------------------------------------------------------------------------
def evaluate_classification(lib: Library, folder: str | os.PathLike[str], *, templates: str | None = None,
                            probe: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Zero-shot (and, with ``probe``, the probe's) accuracy on an ImageFolder, class names from its folders."""
    from glimpse.datasets import read_image_folder
    from glimpse.probe import Probe
    from glimpse.zeroshot import ZeroShotClassifier, text_cache_for

    data = read_image_folder(folder)
    found = lib.vectors(data.paths)
    label_of = {os.path.abspath(p): y for p, y in zip(data.paths, data.labels, strict=True)}
    labels = np.asarray([label_of[os.path.abspath(p)] for p in found.paths], dtype=np.int64)
    names = data.class_names()
    classifier = ZeroShotClassifier.build(lib.encoder, names, templates, text_cache_for(lib.directory, lib.spec.key))
    report: dict[str, Any] = {
        "dataset": str(folder),
        "model": lib.spec.name,
        "model_key": lib.spec.key,
        "vectors": found.summary(),
        "failed": found.errors,
        "zero_shot": classification_report(classifier.probabilities(found.vectors), labels, names),
    }
    if probe is not None:
        loaded = Probe.load(probe)
        loaded.check_model(lib.spec.key)
        index = {name: i for i, name in enumerate(loaded.labels)}
        missing = [n for n in names if n not in index]
        if missing:
            raise UserInputError(f"the probe has no class for {missing}; its classes are {loaded.labels}")
        # Reorder the probe's columns to the dataset's class order.
        report["probe"] = classification_report(loaded.probabilities(found.vectors)[:, [index[n] for n in names]],
                                                labels, names)
        report["probe"]["kind"] = loaded.kind
    return report


def evaluate_multilabel(lib: Library, data: Any, *, templates: str | None = None) -> dict[str, Any]:
    """Zero-shot multi-label scoring of a ``MultiLabelSet`` (e.g. YOLO labels): mAP over classes, each
    class ranking the images by the cosine to its prompt ensemble, and per-class AP."""
    from glimpse.zeroshot import ZeroShotClassifier, text_cache_for

    found = lib.vectors(data.paths)
    row_of = {os.path.abspath(p): i for i, p in enumerate(data.paths)}
    targets = data.targets[[row_of[os.path.abspath(p)] for p in found.paths]]
    classifier = ZeroShotClassifier.build(lib.encoder, data.classes, templates,
                                          text_cache_for(lib.directory, lib.spec.key))
    # Ranking images per class needs no calibration: the cosine orders them as any monotone score would.
    scores = found.vectors @ classifier.weights.T
    per_class = {name: average_precision(scores[:, j], targets[:, j])
                 for j, name in enumerate(data.classes) if targets[:, j].any()}
    return {
        "model": lib.spec.name,
        "model_key": lib.spec.key,
        "vectors": found.summary(),
        "failed": found.errors,
        "images": len(found.paths),
        "classes_with_positives": len(per_class),
        "map": mean_average_precision(scores, targets),
        "per_class_ap": per_class,
    }


def evaluate_retrieval(lib: Library, captions: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """text->image and image->text retrieval on a ``CaptionSet`` (every image with its captions).

    Identical caption texts are one query whose relevant images are all the images carrying it (with
    class prompts as captions, every image of the class is a correct answer).
    """

    found = lib.vectors(captions.paths)
    row_of = {os.path.abspath(p): i for i, p in enumerate(found.paths)}
    query_of: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []  # (query, image row)
    for path, caps in zip(captions.paths, captions.captions, strict=True):
        row = row_of.get(os.path.abspath(path))
        if row is None:
            continue  # the image failed to decode: reported under "failed"
        for caption in caps:
            pairs.append((query_of.setdefault(caption, len(query_of)), row))
    if not pairs:
        raise UserInputError("no caption belongs to a readable image")
    text_vectors = lib.encoder.encode_texts(list(query_of))
    relevant = np.zeros((len(query_of), len(found.paths)), dtype=bool)
    relevant[tuple(np.asarray(pairs).T)] = True
    similarity = text_vectors @ found.vectors.T
    return {
        "model": lib.spec.name,
        "model_key": lib.spec.key,
        "vectors": found.summary(),
        "failed": found.errors,
        "text_to_image": retrieval_report(similarity, relevant, ks),
        "image_to_text": retrieval_report(similarity.T, relevant.T, ks),
    }


# -- plots ----------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise UserInputError("plots need matplotlib: pip install 'glimpse[plot]'") from exc
    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_classification(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG with the confusion matrix and per-class accuracy (zero-shot, plus the probe when present)."""
    plt = _pyplot()
    parts = [("zero-shot", report["zero_shot"])] + ([("probe", report["probe"])] if "probe" in report else [])
    fig, axes = plt.subplots(len(parts), 2, figsize=(13, 5.5 * len(parts)), squeeze=False)
    for row, (title, part) in enumerate(parts):
        names = part["classes"]
        matrix = np.asarray(part["confusion"])
        ax = axes[row][0]
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: confusion (top-1 {part['top1']:.3f})")
        ax = axes[row][1]
        values = [v if v is not None else 0.0 for v in part["per_class"].values()]
        ax.barh(range(len(names)), values, color="tab:blue")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title(f"{title}: per-class accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_retrieval(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG with the Recall@K curves of text->image and image->text."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in ("text_to_image", "image_to_text"):
        recall = report[name]["recall"]
        ks = [int(k) for k in recall]
        ax.plot(ks, [recall[str(k)] for k in ks], marker="o", label=name.replace("_", " "))
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"retrieval: {report['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
