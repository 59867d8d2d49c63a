"""The one table from the ways a user names a vector store (``--store``) to the class that serves it.

=======================================  ==================  =============================================
``--store``                              store class         normalised as
=======================================  ==================  =============================================
none, ``""`` or ``faiss`` (the default)  ``FaissIndex``      None: the library's ``index/`` folder
``milvus://HOST:PORT``, ``http(s)://…``  ``MilvusIndex``     as given (a Milvus server or cluster)
a path ending in ``.db``                 ``MilvusIndex``     absolute, ``~`` expanded (milvus-lite file)
=======================================  ==================  =============================================

Forms are tried in this order (``http://host/x.db`` is a server). Anything else is a UserInputError that
lists the forms. Naming a store imports neither faiss nor pymilvus: the classes load those when constructed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from glimpse.errors import UserInputError
from glimpse.vectors.base import VectorIndex
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.milvus import MilvusIndex

SERVER_SCHEMES = ("milvus://", "http://", "https://")


@dataclass(frozen=True)
class StoreForm:
    """One way of naming a store: which names it takes, how they are normalised, which class serves them."""

    name: str
    #: whether a (non-empty) ``--store`` value has this form
    matches: Callable[[str], bool]
    #: the value as the store class is given it; None for the embedded default
    normalise: Callable[[str], str | None]
    store_class: type[VectorIndex]


def _lite_path(store: str) -> str:
    return os.path.abspath(os.path.expanduser(store))


STORE_FORMS: tuple[StoreForm, ...] = (
    StoreForm("faiss", lambda s: s == "faiss", lambda s: None, FaissIndex),
    StoreForm("milvus server", lambda s: s.startswith(SERVER_SCHEMES), lambda s: s, MilvusIndex),
    StoreForm("milvus-lite", lambda s: s.endswith(".db"), _lite_path, MilvusIndex),
)


def store_form(store: str | None) -> StoreForm:
    """The row of ``STORE_FORMS`` naming ``store`` (None and ``""`` are the default, FAISS).

    UserInputError for a value of no known form.
    """
    value = store or "faiss"
    for form in STORE_FORMS:
        if form.matches(value):
            return form
    raise UserInputError(
        f"--store {store!r}: give 'faiss' (the default), a Milvus server as milvus://HOST:PORT, "
        "or a milvus-lite file ending in .db"
    )


def check_store(store: str | None) -> str | None:
    """``store`` normalised (see the module's table): None for the embedded FAISS index, else the URI or the
    absolute milvus-lite path. UserInputError for anything else, naming the accepted forms."""
    return store_form(store).normalise(store or "faiss")


def store_class(store: str | None) -> type[VectorIndex]:
    """The VectorIndex subclass serving ``store`` (UserInputError as ``check_store``)."""
    return store_form(store).store_class
