"""Synthetic embeddings that behave like CLIP image embeddings, for tests and scale benchmarks.

Real CLIP embeddings are not uniform on the sphere: they share a strong common direction (cosine to
the mean ≈ 0.5) and form topical clusters of very different sizes. Uniform random vectors would make
every ANN index look bad (no structure to exploit) and every recall figure meaningless, so these copy
those two properties.
"""

from __future__ import annotations

import numpy as np


def clustered_embeddings(n: int, dim: int, *, clusters: int = 256, seed: int = 0, chunk: int = 200_000
                         ) -> np.ndarray:
    """``float32[n, dim]`` L2-normalised vectors: common direction + Zipf-sized clusters + noise."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    common /= np.linalg.norm(common)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8  # topics of very different sizes
    weights /= weights.sum()
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):  # bounded temporary memory at 1M+ vectors
        m = min(chunk, n - start)
        which = rng.choice(clusters, size=m, p=weights)
        noise = rng.normal(size=(m, dim)) / np.sqrt(dim)
        rows = 0.6 * common + 0.6 * centres[which] + 0.55 * noise
        out[start : start + m] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out
