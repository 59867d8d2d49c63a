"""The GlimpseError hierarchy.

Library code raises these; only the CLI and HTTP layers turn them into exit or status codes.
Every message says what was expected, what was found, and what to do about it.
"""

from __future__ import annotations


class GlimpseError(Exception):
    """Base class of every error glimpse raises on purpose."""


class UserInputError(GlimpseError):
    """A value the user gave (argument, query, option) is not usable."""


class ModelError(GlimpseError):
    """A model cannot be found, downloaded, or loaded."""


class ModelNotFoundError(ModelError):
    """A model name or directory does not resolve to a usable checkpoint."""


class ImageError(GlimpseError):
    """An image file cannot be read or decoded; the message is one line, fit for a report."""


class ImageTooLargeError(ImageError):
    """An image exceeds the configured decompression-bomb guard."""


class CatalogError(GlimpseError):
    """The library catalog is missing, corrupt, or of an unknown schema version."""


class ReadOnlyLibraryError(CatalogError):
    """The library cannot be written here (read-only folder or file system): it can still be searched."""


class LibraryNotFoundError(UserInputError):
    """A command that only reads a library was pointed at a folder that holds none."""


class IndexMismatchError(GlimpseError):
    """A vector index does not match the model (key or dimension) it is used with."""


class LibraryBusyError(GlimpseError):
    """Another process is indexing this library."""


class FeatureUnavailableError(GlimpseError):
    """A feature needs a part of glimpse (or an extra) that is not installed in this environment."""


class ParityError(ModelError):
    """An exported model does not reproduce the source model's embeddings within tolerance."""
