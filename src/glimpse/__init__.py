"""glimpse — recognize and search anything in your image collections.

The public API is small and imported lazily, so ``import glimpse`` stays light (no torch, no
transformers, no faiss until they are needed)::

    import glimpse
    lib = glimpse.open_library("my-library", model="openai/clip-vit-base-patch32")
    lib.index(["~/Pictures"])
    hits = lib.search("a dog running on the beach", k=10)   # [Hit(id, path, score, ...)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from glimpse.errors import GlimpseError

__version__ = "0.1.0"
__all__ = ["GlimpseError", "Hit", "Library", "ModelSpec", "__version__", "load_encoder", "open_library"]

_LAZY = {
    "open_library": "glimpse.library",
    "Library": "glimpse.library",
    "Hit": "glimpse.library",
    "ModelSpec": "glimpse.spec",
    "load_encoder": "glimpse.registry",
}

if TYPE_CHECKING:
    from glimpse.library import Hit, Library, open_library
    from glimpse.registry import load_encoder
    from glimpse.spec import ModelSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glimpse' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
