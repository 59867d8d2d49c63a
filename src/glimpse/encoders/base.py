"""The one Encoder contract every backend implements.

Backends implement only ``_encode_pixels`` and ``_encode_texts``; batching, input checks and
L2-normalisation live here once, so every backend behaves the same at the edges.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from glimpse.errors import ModelError, UserInputError

if TYPE_CHECKING:
    from PIL import Image

    from glimpse.spec import ModelSpec


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of ``float[n, d]``; zero rows stay zero. Returns float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Encoder(ABC):
    """Maps images and texts into one embedding space.

    ``encode_images(images) -> float32[n, d]`` and ``encode_texts(texts) -> float32[n, d]``, rows
    L2-normalised. ``encode_pixels`` takes already preprocessed ``float32[n, 3, H, W]`` arrays (the
    indexing pipeline preprocesses in worker threads and calls this).
    """

    def __init__(self, spec: ModelSpec, batch_size: int = 32) -> None:
        self.spec = spec
        self.batch_size = batch_size
        #: number of images / texts sent to the backend so far (tests count re-encoding with these)
        self.images_encoded = 0
        self.texts_encoded = 0
        self._counting = threading.Lock()  # encode_pixels may run on two threads at once (overlapping_batches)

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def overlapping_batches(self) -> int:
        """How many ``encode_pixels`` calls the indexer should run at once: 1, unless the backend runs a batch
        as pieces that a second call's pieces can follow on each core without waiting for the whole batch."""
        return 1

    # -- public API ------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encode RGB PIL images; returns L2-normalised ``float32[n, d]``."""
        from glimpse.preprocess import preprocess_batch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(preprocess_batch(images, self.spec.preprocess))

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Encode preprocessed ``float32[n, *spec.preprocess.input_shape]`` (``[n, 3, H, W]`` but for NaFlex);
        returns L2-normalised ``float32[n, d]``."""
        pixels = np.asarray(pixels, dtype=np.float32)
        pre = self.spec.preprocess
        expected = pre.input_shape  # (3, H, W); NaFlex: its packed patches
        if pixels.ndim != 1 + len(expected) or pixels.shape[1:] != expected:
            raise UserInputError(
                f"pixels must have shape [n, {', '.join(map(str, expected))}], got "
                f"{list(pixels.shape)}; preprocess with glimpse.preprocess.preprocess_batch"
            )
        out = [self._encode_pixels(pixels[i : i + self.batch_size]) for i in range(0, len(pixels), self.batch_size)]
        with self._counting:
            self.images_encoded += len(pixels)
        return self._finish(out, len(pixels))

    def encode_texts(self, texts: Sequence[str], *, lang: str | None = None) -> np.ndarray:
        """Encode texts; returns L2-normalised ``float32[n, d]``.

        ``lang``: the texts' language (``zh``, ``pt-BR``…), for models that read a language token; a code
        glimpse does not know is a ``UserInputError`` whatever the model.
        """
        if isinstance(texts, str):
            raise UserInputError("encode_texts takes a list of strings, not one string")
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise UserInputError(f"texts must be strings, got {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = self.prepare_texts(texts, lang)
        out = [self._encode_texts(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        self.texts_encoded += len(texts)
        return self._finish(out, len(texts))

    def prepare_texts(self, texts: list[str], lang: str | None) -> list[str]:
        """Texts as the backend's tokenizer wants them: ``lang`` checked, then cleaned by the model's rule
        (``tokenizer.clean_rule``: immich's whitespace/canonicalize, open_clip's ftfy + HTML), when it has
        one. Backends add what else their model reads (a language token)."""
        from glimpse.tokenizer import clean_rule, clean_text

        if lang is not None:
            from glimpse.languages import check_language

            check_language(lang)
        rule = clean_rule(self.spec.extra)
        return texts if rule is None else [clean_text(t, rule) for t in texts]

    def prefetch_image_tower(self) -> None:  # noqa: B027 - optional hook
        """Start loading what image encoding needs in the background, so it overlaps the first decodes.

        Backends that load lazily override this; errors surface at the first ``encode_pixels``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources (sessions, threads)."""

    # -- backend hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) image features for ``float32[b, 3, H, W]`` -> ``float[b, d]``."""

    @abstractmethod
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Raw (unnormalised) text features for ``b`` strings -> ``float[b, d]``."""

    # -- helpers -----------------------------------------------------------------------------------
    def _finish(self, parts: list[np.ndarray], n: int) -> np.ndarray:
        vectors = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=0)
        if vectors.shape != (n, self.dim):
            raise ModelError(f"the {self.spec.name} backend returned {vectors.shape}, expected {(n, self.dim)}")
        return l2_normalize(vectors)
