"""Parity between two encoders of one model: the evidence that an exported model computes what torch does.

The sample set is fixed and generated (no test data needed): synthetic images of several sizes and kinds
(smooth gradients, noise, hard edges, a near-flat image, a tall and a wide one) plus a multilingual text set
(English, Chinese, Japanese, German, French, Russian, Arabic, emoji, an empty string, punctuation and a text
longer than any context). Users' own images can be added (``--calibrate DIR``).

Thresholds (cosine between the exported and the torch embedding of every sample): fp32 0.9999, fp16 0.999,
int8 0.99. :func:`check` raises ``ParityError`` below them, so a bad export never reaches a library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from glimpse.encoders.base import Encoder, l2_normalize
from glimpse.errors import ParityError

THRESHOLDS: dict[str, float] = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}

PARITY_TEXTS: tuple[str, ...] = (
    "a photo of a dog",
    "A RED CAR parked on the beach at sunset.",
    "two children playing football in the park, 4k, high detail!!!",
    "一只猫坐在窗台上",
    "海滩上的红色汽车",
    "夜晚的城市和蓝天白云",
    "山の上の小さな家",
    "Ein Hund läuft über die grüne Wiese",
    "une femme avec un chapeau rouge",
    "кошка спит на диване",
    "قطة على الأريكة",
    "🐶🐱 emoji only",
    "",
    "?!.,;:'\"()[]{}",
    " ".join(["a very long caption that goes on and on"] * 20),
)


def generated_images(n: int = 10, seed: int = 0) -> list[Image.Image]:
    """``n`` deterministic synthetic RGB images of varied size, texture and aspect ratio."""
    rng = np.random.default_rng(seed)
    sizes = [(224, 224), (640, 480), (480, 640), (96, 72), (1000, 300), (300, 1000), (17, 23), (512, 512)]
    images = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        kind = i % 5
        if kind == 0:  # smooth colour field
            base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
            img = Image.fromarray(base, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        elif kind == 1:  # noise
            img = Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), "RGB")
        elif kind == 2:  # hard-edged shapes on a plain background
            img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
            draw = ImageDraw.Draw(img)
            for _ in range(6):
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                box = (x0, y0, x0 + int(rng.integers(1, w)), y0 + int(rng.integers(1, h)))
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        elif kind == 3:  # near-flat (a hard case for quantisation: tiny activations)
            level = int(rng.integers(0, 256))
            noise = rng.integers(-2, 3, size=(h, w, 3))
            img = Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8), "RGB")
        else:  # gradient
            x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
            y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
            img = Image.fromarray(np.broadcast_to((x + y) / 2, (h, w, 3)).astype(np.uint8), "RGB")
        images.append(img)
    return images


@dataclass
class TowerParity:
    """Agreement of one tower over its samples: per-sample cosine and max |difference| of normalised vectors."""

    samples: list[str]
    cosine: list[float]
    max_abs_diff: list[float]

    @property
    def min_cosine(self) -> float:
        return min(self.cosine) if self.cosine else 1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["min_cosine"] = self.min_cosine
        data["mean_cosine"] = float(np.mean(self.cosine)) if self.cosine else 1.0
        data["max_abs_diff_overall"] = max(self.max_abs_diff, default=0.0)
        return data


def compare(reference: np.ndarray, candidate: np.ndarray, samples: Sequence[str]) -> TowerParity:
    """Parity of ``candidate`` to ``reference`` embeddings (both ``float[n, d]``, normalised here)."""
    ref, cand = l2_normalize(reference), l2_normalize(candidate)
    cos = np.sum(ref.astype(np.float64) * cand.astype(np.float64), axis=1)
    diff = np.max(np.abs(ref - cand), axis=1) if len(ref) else np.zeros(0)
    return TowerParity(list(samples), [float(c) for c in cos], [float(d) for d in diff])


@dataclass
class ParityReport:
    """What ``parity.json`` holds: precision, threshold, both towers, tokenizer agreement, verdict."""

    precision: str
    threshold: float
    image: TowerParity
    text: TowerParity
    tokenizer_mismatches: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            not self.tokenizer_mismatches
            and self.image.min_cosine >= self.threshold
            and self.text.min_cosine >= self.threshold
            and all(math.isfinite(c) for c in self.image.cosine + self.text.cosine)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "threshold": self.threshold,
            "passed": self.passed,
            "image": self.image.to_dict(),
            "text": self.text.to_dict(),
            "tokenizer_mismatches": self.tokenizer_mismatches,
            **self.notes,
        }


def measure(
    reference: Encoder,
    candidate: Encoder,
    precision: str,
    *,
    images: Sequence[Image.Image] | None = None,
    texts: Sequence[str] = PARITY_TEXTS,
    image_names: Sequence[str] | None = None,
) -> ParityReport:
    """Encode the sample set with both encoders and compare (``images`` default: :func:`generated_images`)."""
    if precision not in THRESHOLDS:
        raise ParityError(f"unknown precision {precision!r}; expected one of {sorted(THRESHOLDS)}")
    images = list(images) if images is not None else generated_images()
    names = list(image_names) if image_names is not None else [f"generated-{i}" for i in range(len(images))]
    image = compare(reference.encode_images(images), candidate.encode_images(images), names)
    text = compare(reference.encode_texts(list(texts)), candidate.encode_texts(list(texts)), list(texts))
    return ParityReport(precision, THRESHOLDS[precision], image, text)


def check(report: ParityReport) -> None:
    """Raise ``ParityError`` (with the worst samples) when ``report`` is below its threshold."""
    if report.passed:
        return
    problems = []
    if report.tokenizer_mismatches:
        problems.append(f"tokenizer ids differ from the checkpoint's for {report.tokenizer_mismatches[:3]}")
    for tower in (report.image, report.text):
        worst = int(np.argmin(tower.cosine)) if tower.cosine else 0
        if tower.cosine and not tower.min_cosine >= report.threshold:
            kind = "image" if tower is report.image else "text"
            problems.append(f"{kind} cosine {tower.min_cosine:.6f} on {tower.samples[worst][:40]!r}")
    raise ParityError(
        f"{report.precision} export does not match torch: {'; '.join(problems)} (needs cosine >= "
        f"{report.threshold} on every sample); the export was not written — try another precision "
        "(fp32 always keeps parity) or report the model"
    )
