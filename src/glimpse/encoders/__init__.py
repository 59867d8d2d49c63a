"""Encoders turn images and texts into L2-normalised float32 embeddings (see ``base.Encoder``)."""

from __future__ import annotations

from glimpse.encoders.base import Encoder

__all__ = ["Encoder"]
