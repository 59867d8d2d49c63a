"""glimpse.slabs: rows reserved in order, a batch of them handed out in place (holes closed inside the slab), slabs
reused only once every row is released."""

from __future__ import annotations

import numpy as np
import pytest

from glimpse.errors import GlimpseError
from glimpse.slabs import Slabs

SHAPE = (3, 4, 5)


def _write(slabs: Slabs, n: int) -> list:
    slots = []
    for _ in range(n):
        slot = slabs.reserve()
        slot.array[...] = len(slots) + 1  # each picture its own value
        slots.append(slot)
    return slots


def test_rows_are_reserved_in_order_and_a_full_slab_is_followed_by_a_new_one():
    slabs = Slabs(4, SHAPE)
    slots = _write(slabs, 6)
    assert [s.row for s in slots] == [0, 1, 2, 3, 0, 1]
    assert slots[0].slab is slots[3].slab and slots[4].slab is not slots[3].slab
    assert slots[0].array.shape == SHAPE and slots[0].array.dtype == np.float32 and slots[0].array.flags.c_contiguous
    assert slabs.allocated == 2


def test_a_batch_of_consecutive_rows_is_the_slab_itself_not_a_copy():
    slabs = Slabs(4, SHAPE)
    slots = _write(slabs, 4)
    batch = slabs.batch(slots[1:3])
    assert batch is not None and batch.shape == (2, *SHAPE)
    assert np.shares_memory(batch, slots[1].array) and np.shares_memory(batch, slots[2].array)
    assert batch[0].min() == batch[0].max() == 2 and batch[1].min() == batch[1].max() == 3


def test_holes_are_closed_by_moving_later_rows_down_inside_the_slab():
    slabs = Slabs(6, SHAPE)
    slots = _write(slabs, 6)
    slabs.release(slots[1])  # tasks that gave no pixels
    slabs.release(slots[3])
    kept = [slots[0], slots[2], slots[4], slots[5]]
    batch = slabs.batch(kept)
    assert batch is not None and np.shares_memory(batch, slots[0].array)
    assert [float(row.mean()) for row in batch] == [1.0, 3.0, 5.0, 6.0]  # each picture, in order


def test_a_batch_over_two_slabs_is_left_to_the_caller():
    slabs = Slabs(2, SHAPE)
    slots = _write(slabs, 3)
    assert slabs.batch(slots[1:3]) is None
    assert slabs.batch([]) is None


def test_slots_out_of_their_order_are_refused():
    slabs = Slabs(4, SHAPE)
    slots = _write(slabs, 3)
    with pytest.raises(GlimpseError, match="order"):
        slabs.batch([slots[2], slots[0]])


def test_a_slab_is_reused_only_when_every_row_is_released():
    slabs = Slabs(2, SHAPE)
    first = _write(slabs, 2)
    slabs.release(first[0])
    second = _write(slabs, 2)
    assert second[0].slab is not first[0].slab  # first[1] still held: its slab is not handed out
    slabs.release(first[1])
    slabs.release(first[1])  # a second release changes nothing
    third = _write(slabs, 2)
    assert third[0].slab is first[0].slab and [s.row for s in third] == [0, 1]
    assert slabs.allocated == 2
    for slot in second + third:
        slabs.release(slot)
    fourth = _write(slabs, 4)
    assert slabs.allocated == 2 and {id(s.slab) for s in fourth} == {id(first[0].slab), id(second[0].slab)}


def test_a_slab_needs_a_row():
    with pytest.raises(GlimpseError, match="at least one row"):
        Slabs(0, SHAPE)
