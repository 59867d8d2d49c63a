"""Batch slabs: the arrays the decode workers write preprocessed pixels into, so that a batch of photos reaches
the encoder as a slice of one array instead of a copy gathered from one array per photo.

The indexer's main thread reserves a row (a :class:`Slot`) for each photo task as it submits the task, in the
order the results come back; the worker preprocesses into its row. A batch of consecutive photos is then rows
``[a, b)`` of one slab and goes to the encoder as it is (:meth:`Slabs.batch`). A photo whose task gave no pixels
(a failure, a vector reused from a copy, an unchanged file read for its text only) leaves a hole, which
:meth:`Slabs.batch` closes by moving the later rows of the batch down, inside the slab. A batch spread over two
slabs gets ``None`` and is gathered by the caller.

A slab is handed out again once every row reserved in it has been released: its batch's vectors came back
(the encoder is done reading it), or its task gave no pixels, or its pixels were copied elsewhere. Only one
thread reserves and releases; a worker writes only into its own row, and the row is read only after the
worker's result has been received.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from glimpse.errors import GlimpseError


@dataclass(eq=False)
class _Slab:
    array: np.ndarray  # float32[rows, *shape]
    reserved: int = 0  # rows handed out since the slab was last taken
    held: int = 0  # of those, rows not released yet


@dataclass(eq=False)
class Slot:
    """One reserved row of a slab: ``array`` is where a worker writes one picture (``float32[*shape]``)."""

    slab: _Slab
    row: int
    released: bool = field(default=False, repr=False)

    @property
    def array(self) -> np.ndarray:
        return self.slab.array[self.row]


class Slabs:
    """Slabs of ``rows`` rows of ``float32[*shape]``, reserved row by row and reused once released.

    The slabs in use at once are those a batch or a task in flight still holds (a few for a window of twice
    the batch size), each allocated once per run.
    """

    def __init__(self, rows: int, shape: tuple[int, ...]) -> None:
        if rows < 1:
            raise GlimpseError(f"a slab needs at least one row, got {rows}")
        self.rows = rows
        self.shape = tuple(shape)
        self._current: _Slab | None = None
        self._free: list[_Slab] = []
        self.allocated = 0  # slabs made in this object's life (the rest were reused)

    def reserve(self) -> Slot:
        """The next row of the current slab; once that slab is full, the first row of a released or a new one."""
        slab = self._current
        if slab is None or slab.reserved == self.rows:
            slab = self._free.pop() if self._free else self._new()
            slab.reserved = slab.held = 0
            self._current = slab
        slot = Slot(slab, slab.reserved)
        slab.reserved += 1
        slab.held += 1
        return slot

    def release(self, slot: Slot) -> None:
        """Give ``slot``'s row back (once; later calls do nothing). A full slab with no row held is reused."""
        if slot.released:
            return
        slot.released = True
        slab = slot.slab
        slab.held -= 1
        if slab.held == 0 and slab.reserved == self.rows:
            if slab is self._current:  # full: the next reservation would take another slab anyway
                self._current = None
            self._free.append(slab)

    def batch(self, slots: Sequence[Slot]) -> np.ndarray | None:
        """``float32[len(slots), *shape]``: the pictures of ``slots`` (reserved in this order, every one written)
        as consecutive rows of their slab, holes between them closed by moving rows down; None when they are
        not all in one slab (the caller gathers them) or ``slots`` is empty.

        Closing a hole only writes rows between the first and the last of ``slots``, whose tasks are all done.
        """
        if not slots:
            return None
        slab = slots[0].slab
        if any(s.slab is not slab for s in slots):
            return None
        start = slots[0].row
        for offset, slot in enumerate(slots):
            if slot.row < start + offset:
                raise GlimpseError("slots must be in the order they were reserved")
            if slot.row != start + offset:  # below it, rows of tasks that gave no pixels: free to overwrite
                slab.array[start + offset] = slab.array[slot.row]
        return slab.array[start : start + len(slots)]

    def _new(self) -> _Slab:
        self.allocated += 1
        return _Slab(np.empty((self.rows, *self.shape), np.float32))
