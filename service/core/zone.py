"""One zone's holds: its radix tree, its lock, and the synchronous steps on them.

Every change to a zone's holds is one of the steps below, taken under the zone's write
lock (the caller holds it) and without an await, so nobody sees it half done. They keep
four things true together: the tree entry (value = the ``Holder``, stamp = ``since`` in
µs, which is also the hold's *generation*), its marks, the holder's counts (``holds``,
``held_pages``) and the index of each holder's heads (``heads``, see ``heads.py``).

    RELEASING   mark: the hold is being released (state ``releasing``)
    NO_HANDLER  mark: its holder may have no release handler

NO_HANDLER is a filter, not the truth: every hold whose holder has no release handler
carries it, and a hold whose holder has one may carry it for a while (its holder just
got a handler and its marks are being cleared, zone by zone: ``sweeps.py``). So
``lacks_handler`` checks the holder of each marked entry it meets; with no change under
way the first marked entry decides. A new hold is marked when its holder's
``no_handler_mark`` says so, which a change taking the handler away sets *before* it
marks the holder's existing holds and drops the URL.

A step that takes something back (an undo, a settle after a handler answered) touches a
hold only if it is still the *same generation*: same head, same stamp, same holder
object. ``current()`` is that check, written once.

A hold's state is read, not stored, except ``releasing`` (a mark): a hold whose holder's
lease has expired reads ``orphaned`` from the moment it expires (``snapshot()``).
``pages_of`` counts each holder's pages in this zone (zones report orphaned pages).
"""

from __future__ import annotations

from typing import Final

import aiorwlock

from pageholder.service.core.heads import Heads
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

    __slots__ = ("zone", "tree", "lock", "pages_of", "heads")

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.tree = RadixTree()
        self.pages_of: dict[Holder, int] = {}
        self.heads = Heads()
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

    def lacks_handler(self, start: int, end: int) -> bool:
        """Whether a hold intersecting ``[start, end)`` has a holder without a release
        handler. Cost: O(height), plus the stale marks it passes while a holder's marks
        are being cleared (module docstring)."""
        for entry in self.tree.marked(NO_HANDLER, start, end):
            holder = entry.value
            assert isinstance(holder, Holder)
            if not holder.has_release_handler:
                return True
        return False

    # -- changing (under the write lock) -----------------------------------------------

    def insert(self, pfn: int, order: int, holder: Holder, stamp: int) -> bool:
        """Add the hold if nothing overlaps it (True), else change nothing (False).
        Cost: O(height)."""
        tree = self.tree
        try:
            tree.insert(pfn, holder, order, stamp)
        except Occupied:
            return False
        if holder.no_handler_mark:
            tree.set_mark(pfn, NO_HANDLER)
        self.account(holder, order, +1)
        self.heads.add(holder, pfn, order)
        return True

    def fill(self, start: int, end: int, holder: Holder, stamp: int) -> bool:
        """Add an order-0 hold on every page of ``[start, end)`` if none of them is held
        (True), else change nothing (False): what ``insert`` page by page would leave,
        built a leaf at a time. Cost: O(height + (end - start) / 64)."""
        marks = (NO_HANDLER,) if holder.no_handler_mark else ()
        try:
            self.tree.fill(start, end, holder, stamp, marks)
        except Occupied:
            return False
        holder.holds += end - start
        holder.held_pages += end - start
        self.pages_of[holder] = self.pages_of.get(holder, 0) + (end - start)
        self.heads.add_run(holder, start, end)
        return True

    def replace(self, pfn: int, order: int, holder: Holder, stamp: int) -> list[Entry]:
        """Put the hold in place of whatever overlaps it (an overwrite); returns the
        entries it replaced. Cost: O(height + replaced entries)."""
        replaced = self.tree.store(pfn, holder, order, stamp)
        for entry in replaced:
            previous = entry.value
            assert isinstance(previous, Holder)
            self.account(previous, entry.order, -1)
            self.heads.discard(previous, entry.head, entry.order)
        if holder.no_handler_mark:
            self.tree.set_mark(pfn, NO_HANDLER)
        self.account(holder, order, +1)
        self.heads.add(holder, pfn, order)
        return replaced

    def erase(self, entry: Entry) -> None:
        """Remove ``entry`` (it is in the tree) and uncount it. Cost: O(height)."""
        holder = entry.value
        assert isinstance(holder, Holder)
        self.tree.erase(entry.head)
        self.account(holder, entry.order, -1)
        self.heads.discard(holder, entry.head, entry.order)

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
        """Every hold of ``holder`` here follows whether it has a release handler, in one
        step. Cost: O(its holds here * height)."""
        for head in list(self.heads.heads(holder)):
            self.mark_head(head, has_handler)

    def mark_head(self, head: int, has_handler: bool) -> None:
        """The hold at ``head`` follows whether its holder has a release handler.
        Cost: O(height)."""
        if has_handler:
            self.tree.clear_mark(head, NO_HANDLER)
        else:
            self.tree.set_mark(head, NO_HANDLER)

    def _check(self) -> None:
        """Assert the tree's invariants, and that the index and the per-holder counts
        are what a scan of the tree finds. Cost: O(entries)."""
        self.tree._check()
        heads: dict[Holder, list[int]] = {}
        pages: dict[Holder, int] = {}
        for entry in self.tree.items():
            holder = entry.value
            assert isinstance(holder, Holder)
            heads.setdefault(holder, []).append(entry.head)
            pages[holder] = pages.get(holder, 0) + (1 << entry.order)
            if not holder.has_release_handler:
                assert self.tree.get_mark(entry.head, NO_HANDLER), entry
        assert set(self.heads.holders()) == set(heads), "index holders"
        for holder, expected in heads.items():
            assert sorted(self.heads.heads(holder)) == expected, holder.name
        assert self.pages_of == pages, "pages_of"
