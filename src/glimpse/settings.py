"""Which library to open, and how: the one set of options the CLI and the server both take.

Light on purpose (no numpy, no catalog): ``glimpse --help`` builds these without loading the library;
``Library.from_settings`` opens the library they name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LIBRARY_ENV = "GLIMPSE_LIBRARY"


def default_library_dir() -> Path:
    """``$GLIMPSE_LIBRARY``, else ``$XDG_DATA_HOME/glimpse``, else ``~/.local/share/glimpse``."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "glimpse"


@dataclass(frozen=True)
class LibrarySettings:
    """Which library to open and how: the global options of the CLI and of the server alike.

    Each field is the global option of the same name. ``library``: the library folder (None:
    ``default_library_dir()``); ``model``: a model name or local model directory (None: the model the
    library was built with); ``store``: the vector store (None or ``"faiss"``: embedded FAISS; the forms are
    in ``glimpse.vectors.stores``); ``device``: the torch device for encoding.
    """

    library: Path | None = None
    model: str | None = None
    store: str | None = None
    device: str = "cpu"

    @property
    def library_dir(self) -> Path:
        """The library folder these settings name (the default one when none is given)."""
        return Path(self.library).expanduser() if self.library is not None else default_library_dir()
