"""One zone's holds: its radix tree, its lock, and the synchronous steps on them.

Every change to a zone's holds is one of the steps below, taken under the zone's write
lock (the caller holds it) and without an await, so nobody sees it half done. They keep
three things true together: the tree entry (value = the ``Holder``, stamp = ``since`` in
µs, which is also the hold's *generation*), its marks, and the holder's counts
(``holds``, ``held_pages``).

    RELEASING   mark: the hold is being released (state ``releasing``)
    NO_HANDLER  mark: its holder has no release handler (the block is not ``removable``)

A step that takes something back (an undo, a settle after a handler answered) touches a
hold only if it is still the *same generation*: same head, same stamp, same holder
object. ``current()`` is that check, written once.

A hold's state is read, not stored, except ``releasing`` (a mark): a hold whose holder's
lease has expired reads ``orphaned`` from the moment it expires (``snapshot()``).
``pages_of`` counts each holder's pages in this zone (zones report orphaned pages).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import aiorwlock

from pageholder.service.core.layout import Zone
from pageholder.service.core.model import Hold, Holder, HoldState
from pageholder.service.core.radix import Entry, Occupied, RadixTree

RELEASING: Final = 0
NO_HANDLER: Final = 1


def account(holder: Holder, order: int, sign: int) -> None:
    """Count a hold of ``order`` in (+1) or out (-1) of its holder's totals."""
    holder.holds += sign
    holder.held_pages += sign << order


class ZoneHolds:
    """One zone's holds: its radix tree and the lock that guards it."""

    __slots__ = ("zone", "tree", "lock", "pages_of")

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.tree = RadixTree()
        self.pages_of: dict[Holder, int] = {}
        # fast: no extra trip through the event loop after each acquire. That yield only
        # lets a cancellation land right after acquiring; our critical sections take the
        # lock, change the tree synchronously and drop it, so there is nothing to gain.
        self.lock = aiorwlock.RWLock(fast=True)

    # -- reading -----------------------------------------------------------------------

    def snapshot(self, entry: Entry) -> Hold:
        """The hold ``entry`` is, as the registry hands it out. Cost: O(height)."""
        holder = entry.value
        assert isinstance(holder, Holder)
        if self.tree.get_mark(entry.head, RELEASING):
            state = HoldState.RELEASING
        elif holder.lease is not None and holder.lease.expired():
            state = HoldState.ORPHANED
        else:
            state = HoldState.HELD
        return Hold(entry.head, entry.order, holder, state, entry.stamp)

    def current(self, head: int, stamp: int, holder: Holder) -> Entry | None:
        """The entry at ``head`` if it is still that generation (same head, stamp and
        holder), else None. Cost: O(height)."""
        entry = self.tree.load(head)
        if entry is None or entry.head != head or entry.stamp != stamp:
            return None
        return entry if entry.value is holder else None

    def entries_of(self, holder: Holder) -> Iterator[Entry]:
        """Every entry of ``holder`` in this zone. Cost: O(entries of the zone)."""
        return (entry for entry in self.tree.items() if entry.value is holder)

    # -- changing (under the write lock) -----------------------------------------------

    def insert(self, pfn: int, order: int, holder: Holder, stamp: int) -> bool:
        """Add the hold if nothing overlaps it (True), else change nothing (False).
        Cost: O(height)."""
        tree = self.tree
        try:
            tree.insert(pfn, holder, order, stamp)
        except Occupied:
            return False
        if holder.release_url is None:
            tree.set_mark(pfn, NO_HANDLER)
        self.account(holder, order, +1)
        return True

    def fill(self, start: int, end: int, holder: Holder, stamp: int) -> bool:
        """Add an order-0 hold on every page of ``[start, end)`` if none of them is held
        (True), else change nothing (False): what ``insert`` page by page would leave,
        built a leaf at a time. Cost: O(height + (end - start) / 64)."""
        marks = () if holder.has_release_handler else (NO_HANDLER,)
        try:
            self.tree.fill(start, end, holder, stamp, marks)
        except Occupied:
            return False
        holder.holds += end - start
        holder.held_pages += end - start
        return True

    def erase(self, entry: Entry) -> None:
        """Remove ``entry`` (it is in the tree) and uncount it. Cost: O(height)."""
        holder = entry.value
        assert isinstance(holder, Holder)
        self.tree.erase(entry.head)
        self.account(holder, entry.order, -1)

    def account(self, holder: Holder, order: int, sign: int) -> None:
        """Count a hold in (+1) or out (-1) of its holder's totals and this zone's."""
        account(holder, order, sign)
        pages = self.pages_of.get(holder, 0) + (sign << order)
        if pages:
            self.pages_of[holder] = pages
        else:
            self.pages_of.pop(holder, None)

    def erase_generation(self, head: int, stamp: int, holder: Holder) -> bool:
        """Erase the hold at ``head`` only if it is still that generation."""
        entry = self.current(head, stamp, holder)
        if entry is None:
            return False
        self.erase(entry)
        return True

    def restore(self, hold: Hold) -> bool:
        """Put ``hold`` back as held where its pages are still free (an undo)."""
        return self.insert(hold.pfn, hold.order, hold.holder, hold.since_us)

    def settle(self, entry: Entry, released: bool, error: str | None) -> bool:
        """After a handler answered for ``entry``: erase it (released), or put it back to
        held and note the holder's error. Only the same generation is touched: a hold
        dropped and set again meanwhile is left alone. Returns whether it was erased."""
        holder = entry.value
        assert isinstance(holder, Holder)
        current = self.current(entry.head, entry.stamp, holder)
        if current is None:
            return False
        if released:
            self.erase(current)
            return True
        self.tree.clear_mark(entry.head, RELEASING)
        holder.last_error = error
        return False

    def mark_handler(self, holder: Holder, has_handler: bool) -> None:
        """Every hold of ``holder`` follows whether it has a release handler."""
        for entry in list(self.entries_of(holder)):
            self.mark_entry_handler(entry, has_handler)

    def mark_entry_handler(self, entry: Entry, has_handler: bool) -> None:
        """One hold follows whether its holder has a release handler. Cost: O(height)."""
        if has_handler:
            self.tree.clear_mark(entry.head, NO_HANDLER)
        else:
            self.tree.set_mark(entry.head, NO_HANDLER)
