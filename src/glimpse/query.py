"""Query arithmetic: ``"beach +sunset -people"``, ``"2:red car + 0.5:night"``, image terms.

A query is a list of terms. Terms are separated by ``+`` or ``-`` that start a new word; the first
term is positive. A term may carry a weight as ``w:term``. A term naming an existing image file is
an image term. Every term is embedded and L2-normalised on its own, then the weighted sum is
normalised again, so a term's influence depends on its weight, not on its length or modality.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glimpse.encoders.base import Encoder, l2_normalize
from glimpse.errors import ImageError, UserInputError
from glimpse.images import IMAGE_EXTENSIONS, open_image

_SPLIT = re.compile(r"\s+(?=[+-]\S)")
_WEIGHT = re.compile(r"^(\d+(?:\.\d+)?|\.\d+):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class QueryTerm:
    """One term: signed ``weight`` and either ``text`` or an ``image`` path."""

    weight: float
    text: str | None = None
    image: Path | None = None

    def describe(self) -> str:
        return f"{self.weight:+g}×{self.text if self.text is not None else f'image {self.image}'}"


def _is_image_path(term: str) -> bool:
    return os.path.splitext(term)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(term)


def parse_query(query: str, images: list[str | os.PathLike[str]] | None = None) -> list[QueryTerm]:
    """Parse ``query`` (may be empty when ``images`` are given) into weighted terms."""
    terms: list[QueryTerm] = []
    text = query.strip()
    for raw in _SPLIT.split(text) if text else []:
        sign = 1.0
        part = raw.strip()
        if part[:1] in "+-":
            sign = -1.0 if part[0] == "-" else 1.0
            part = part[1:].strip()
        weight = 1.0
        match = _WEIGHT.match(part)
        if match:
            weight = float(match.group(1))
            part = match.group(2).strip()
        if not part:
            raise UserInputError(f"empty term in query {query!r}: write terms like 'beach +sunset -people'")
        if _is_image_path(part):
            terms.append(QueryTerm(sign * weight, image=Path(part)))
        else:
            terms.append(QueryTerm(sign * weight, text=part))
    for image in images or []:
        if not os.path.isfile(image):
            raise UserInputError(f"query image {image} does not exist")
        terms.append(QueryTerm(1.0, image=Path(image)))
    if not terms:
        raise UserInputError("the query is empty: give some text, or an image with --image")
    if all(t.weight <= 0 for t in terms):
        raise UserInputError(f"query {query!r} has only negative terms; add something to look for")
    return terms


def embed_terms(terms: list[QueryTerm], encoder: Encoder, lang: str | None = None) -> np.ndarray:
    """Combine ``terms`` into one L2-normalised ``float32[d]`` query vector (``lang``: the text terms' language)."""
    texts = [t.text for t in terms if t.text is not None]
    text_vectors = iter(encoder.encode_texts(texts, lang=lang)) if texts else iter(())
    image_terms = [t for t in terms if t.image is not None]
    images = []
    for term in image_terms:
        try:
            images.append(open_image(term.image, min_side=encoder.spec.preprocess.min_side).image)
        except ImageError as exc:
            raise type(exc)(f"query image {term.image}: {exc}") from exc
    image_vectors = iter(encoder.encode_images(images)) if images else iter(())
    total = np.zeros(encoder.dim, dtype=np.float32)
    for term in terms:
        vector = next(text_vectors) if term.text is not None else next(image_vectors)
        total += np.float32(term.weight) * vector
    if not np.any(total):
        raise UserInputError("the query terms cancel out; change the weights")
    return l2_normalize(total[None, :])[0]
