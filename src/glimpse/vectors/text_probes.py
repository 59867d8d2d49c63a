"""Text query vectors for tuning an IVF index: what users type, embedded by the library's own model.

Users search with text, and CLIP-family text embeddings sit apart from the image embeddings an index
holds (the modality gap), so an ``nprobe`` tuned on image-like held-out queries alone leaves text queries
at a far lower recall. These probes are a fixed, deterministic set of generic prompts built from the
built-in bilingual tag vocabulary (``glimpse.tagging.vocab``): bare tag words and short captions in
English, plus Chinese ones for models that speak Chinese. A few hundred prompts encode in seconds, and
the vectors are cached next to the index per model key, so retraining does not encode them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from glimpse.vectors.files import atomic_write, safe_name

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder

PROBES = 256
# Caption shapes people type into a search box; "{}" is a tag word.
EN_TEMPLATES = ("{}", "a photo of a {}", "a {} in the city", "close-up of a {}", "a {} at night",
                "people with a {}", "a small {} on a table", "an old {}")
ZH_TEMPLATES = ("{}", "一张{}的照片", "城市里的{}", "夜晚的{}")
ZH_SHARE = 0.25  # of the probes, for models that speak Chinese


def probe_prompts(languages: Sequence[str] = ("en",), count: int = PROBES) -> list[str]:
    """``count`` deterministic prompts: tags spread evenly over the built-in vocabulary, each in a
    template chosen round-robin; a quarter in Chinese when ``languages`` include ``"zh"``."""
    from glimpse.tagging.vocab import builtin_rows

    rows = builtin_rows()  # the built-in list, not a user's: the probes must not change with settings
    zh = int(count * ZH_SHARE) if "zh" in languages else 0
    prompts: list[str] = []
    for lang, n, templates in (("en", count - zh, EN_TEMPLATES), ("zh", zh, ZH_TEMPLATES)):
        if n <= 0:
            continue
        offset = 1 if lang == "zh" else 0  # Chinese probes use the tags between the English ones
        stride = max(len(rows) // n, 1)
        for i in range(n):
            en, chinese, _ = rows[(i * stride + offset * (stride // 2)) % len(rows)]
            word = en if lang == "en" else chinese.split("/")[0].strip()
            prompts.append(templates[i % len(templates)].format(word))
    return prompts


def text_probe_vectors(encoder: Encoder, cache_dir: Path | None = None, *, count: int = PROBES) -> np.ndarray:
    """``float32[count, d]`` L2-normalised embeddings of ``probe_prompts`` for ``encoder``'s languages.

    Cached in ``cache_dir/<model key>.textprobes.npy``; the file name carries a digest of the prompts, so
    a changed prompt list is encoded afresh instead of reusing stale vectors.
    """
    prompts = probe_prompts(encoder.spec.languages, count)
    digest = hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()[:12]
    path = cache_dir / f"{safe_name(encoder.key)}.textprobes-{digest}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(prompts), encoder.dim) and cached.dtype == np.float32:
                return cached
        except (OSError, ValueError):
            pass  # a damaged cache is only a cache: encode again and overwrite it
    vectors = encoder.encode_texts(prompts)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: _save(tmp, vectors))
        except OSError:
            pass  # only a cache: a read-only (or full) library encodes the prompts again next time
    return vectors


def _save(path: Path, vectors: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a handle: np.save would append ".npy" to the temporary name
        np.save(fh, vectors, allow_pickle=False)
