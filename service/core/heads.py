"""Where each holder's holds are in one zone: the heads of its entries, as bitmaps.

Work on every hold of one holder (a PATCH that gives it or takes away its release
handler, a forced delete) must not scan the whole zone. ``Heads`` answers "which heads
does this holder have here" in O(its holds), and "none" in O(1).

Layout: an entry of order ``k`` has its canonical slot in a tree node at *level*
``k // CHUNK_SHIFT`` (``radix.py``), so its head is a multiple of ``64**level``. Per
holder, one ``dict`` maps a *group* key to a 64-bit bitmap of heads::

    level = order // 6          shift = 6 * level
    group = (head >> (shift + 6)) << LEVEL_BITS | level
    bit   = (head >> shift) & 63

A group is one tree node's worth of canonical slots, so the index has at most one
dict item per (holder, tree node) it uses and costs a few bytes per hold where a
holder's holds are dense (64 order-0 holds in a leaf: one item), never more items than
the tree has nodes per holder. Only ints and one dict per holder: nothing the garbage
collector tracks per hold.

The zone's steps (``zone.py``) keep it exact: every insert, fill, replace and erase
updates it in the same synchronous step. ``ZoneHolds._check`` proves it against a scan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from pageholder.service.core.model import Holder
from pageholder.service.core.radix import CHUNK_MASK, CHUNK_SHIFT, MAX_ORDER

LEVEL_BITS: Final = 2
LEVEL_MASK: Final = (1 << LEVEL_BITS) - 1
assert MAX_ORDER // CHUNK_SHIFT <= LEVEL_MASK


def group_of(head: int, order: int) -> tuple[int, int]:
    """(group key, bit) of the head of an entry of ``order``. Cost: O(1)."""
    level = order // CHUNK_SHIFT
    shift = CHUNK_SHIFT * level
    return (head >> (shift + CHUNK_SHIFT)) << LEVEL_BITS | level, 1 << (
        (head >> shift) & CHUNK_MASK
    )


def heads_of_group(group: int, bits: int) -> Iterator[int]:
    """The heads a group's bitmap names, ascending. Cost: O(bits set)."""
    level = group & LEVEL_MASK
    shift = CHUNK_SHIFT * level
    base = (group >> LEVEL_BITS) << (shift + CHUNK_SHIFT)
    while bits:
        low = bits & -bits
        yield base | ((low.bit_length() - 1) << shift)
        bits ^= low


class Heads:
    """The heads of every holder's holds in one zone; see the module docstring."""

    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[Holder, dict[int, int]] = {}

    def add(self, holder: Holder, head: int, order: int) -> None:
        """Note a new entry's head. Cost: O(1)."""
        group, bit = group_of(head, order)
        groups = self._of.get(holder)
        if groups is None:
            self._of[holder] = {group: bit}
        else:
            groups[group] = groups.get(group, 0) | bit

    def add_run(self, holder: Holder, start: int, end: int) -> None:
        """Note order-0 heads on every page of ``[start, end)``. Cost: O(1 + pages / 64)."""
        groups = self._of.setdefault(holder, {})
        pfn = start
        while pfn < end:
            stop = min(end, (pfn | CHUNK_MASK) + 1)
            group = (pfn >> CHUNK_SHIFT) << LEVEL_BITS
            run = ((1 << (stop - pfn)) - 1) << (pfn & CHUNK_MASK)
            groups[group] = groups.get(group, 0) | run
            pfn = stop
        if not groups:
            del self._of[holder]

    def discard(self, holder: Holder, head: int, order: int) -> None:
        """Forget an erased entry's head. Cost: O(1)."""
        groups = self._of.get(holder)
        if groups is None:
            return
        group, bit = group_of(head, order)
        bits = groups.get(group, 0) & ~bit
        if bits:
            groups[group] = bits
        else:
            groups.pop(group, None)
            if not groups:
                del self._of[holder]

    def has(self, holder: Holder) -> bool:
        """Whether ``holder`` has any hold here. Cost: O(1)."""
        return holder in self._of

    def groups(self, holder: Holder) -> list[int]:
        """A snapshot of ``holder``'s group keys (for work that yields between groups:
        read each group's heads with ``heads_in`` when its turn comes). Cost: O(groups).
        """
        groups = self._of.get(holder)
        return [] if groups is None else list(groups)

    def heads_in(self, holder: Holder, group: int) -> list[int]:
        """``holder``'s heads in ``group`` now, ascending. Cost: O(heads of the group)."""
        groups = self._of.get(holder)
        bits = 0 if groups is None else groups.get(group, 0)
        return list(heads_of_group(group, bits))

    def heads(self, holder: Holder) -> Iterator[int]:
        """Every head of ``holder``, group by group. The index must not change while
        this is iterated. Cost: O(heads)."""
        for group, bits in list(self._of.get(holder, {}).items()):
            yield from heads_of_group(group, bits)

    def count(self, holder: Holder) -> int:
        """How many holds ``holder`` has here. Cost: O(groups)."""
        return sum(bits.bit_count() for bits in self._of.get(holder, {}).values())

    def holders(self) -> list[Holder]:
        return list(self._of)
