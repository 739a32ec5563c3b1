"""Batch-set with ranges taken as ranges: a run of free pages is held in one step.

``batch.batch_set`` takes a batch entry by entry: 65,536 pages are 65,536 tree inserts,
65,536 ops and 65,536 result objects. Here each ``(start_pfn, nr_pages)`` range is cut
into *pieces* (at zone boundaries) and a piece whose pages are all free and online is
held at once: one ``ZoneHolds.fill`` (the tree fills whole leaves), one ``HoldRangeOp``
(the store generates its rows itself) and one ``CreatedRun`` result. Whatever a piece
cannot take whole (a page held already, a block not online, pages in no zone) goes
through the page-by-page steps of ``batch.batch_set``, so every page is answered as
that function would answer it, in the same order: ``pages`` first, then each range.

Locking, slices, atomicity and the deferred full collections are ``batch``'s: every
zone touched is write-locked for the whole batch in zone order, the work yields between
slices (``core.slices.Slices``: a piece that is not free is 65,536 page steps), an
``atomic`` batch takes everything back in reverse at its first failure (or when it is
cancelled at a pause), and the batch is one journal submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pageholder.service.core.batch import BatchItem, set_batch_events
from pageholder.service.core.collector import full_collections_deferred
from pageholder.service.core.errors import PageHolderError
from pageholder.service.core.events import EventBody
from pageholder.service.core.journal import Op, hold_op, hold_range_op, set_ops
from pageholder.service.core.model import Holder, SetResult, SetStatus
from pageholder.service.core.registry import ADMIN, Actor, Registry
from pageholder.service.core.slices import Slices
from pageholder.service.core.zone import ZoneHolds

__all__ = ["CreatedRun", "batch_set_ranges"]


class CreatedRun(NamedTuple):
    """The answer for ``nr_pages`` order-0 pages from ``start_pfn`` on: all ``created``."""

    start_pfn: int
    nr_pages: int


Result = BatchItem | CreatedRun


class _Piece(NamedTuple):
    """Part of a range inside one zone (``zh``), or outside every zone (None)."""

    zh: ZoneHolds | None
    start: int
    end: int


def _pieces(registry: Registry, start: int, end: int) -> list[_Piece]:
    """``[start, end)`` cut at zone boundaries. Cost: O(log(zones) * pieces)."""
    layout = registry.layout
    pieces: list[_Piece] = []
    pfn = start
    while pfn < end:
        zone = layout.zone_of(pfn)
        if zone is None:
            # Up to the next zone's start: every page there is answered pfn_not_found.
            later = [z.start_pfn for z in layout.zones if pfn < z.start_pfn < end]
            stop = min(later, default=end)
            pieces.append(_Piece(None, pfn, stop))
        else:
            stop = min(end, zone.end_pfn)
            pieces.append(_Piece(registry.zones[zone.index], pfn, stop))
        pfn = stop
    return pieces


async def batch_set_ranges(
    registry: Registry,
    holder_name: str,
    pages: Sequence[tuple[int, int]],
    ranges: Sequence[tuple[int, int]],
    *,
    overwrite: bool = False,
    atomic: bool = False,
    actor: Actor = ADMIN,
) -> list[Result]:
    """``batch.batch_set(expand(pages, ranges))`` with whole runs held at once; the
    answer lists a ``CreatedRun`` where it would list a run of ``created`` items.
    Cost: O(entries of ``pages``) + O(pieces * height + pages of ranges / 64) when the
    ranges are free, O(pages * height) for the pages of a piece that is not."""
    holder = registry.holder(holder_name)
    registry.authorize(actor, holder, "hold pages")
    stamp = registry.new_stamp()
    singles: list[tuple[int, int, ZoneHolds | PageHolderError]] = []
    for pfn, order in pages:
        try:
            singles.append((pfn, order, registry.place(pfn, order)))
        except PageHolderError as exc:
            if atomic:
                raise
            singles.append((pfn, order, exc))
    pieces = [piece for s, n in ranges for piece in _pieces(registry, s, s + n)]
    touched = {zh.zone.index: zh for _, _, zh in singles if isinstance(zh, ZoneHolds)}
    touched.update((p.zh.zone.index, p.zh) for p in pieces if p.zh is not None)
    step = _Steps(registry, holder, stamp, overwrite, actor)
    locked: list[ZoneHolds] = []
    pending = None
    # Full collections wait for the batch, as in batch._run (``core.collector``).
    with full_collections_deferred():
        try:
            for _, zh in sorted(touched.items()):
                await zh.lock.writer_lock.acquire()
                locked.append(zh)
            registry.check_enrolled(holder)  # it may have been removed while we waited
            registry.leases.check_may_hold(holder)  # an expired holder starts no hold
            # From here on the awaits are pauses between slices, as in batch._run: other
            # zones go on, the touched ones stay write-locked.
            slices = Slices()
            try:
                for n, (pfn, order, where) in enumerate(singles, 1):
                    step.single(pfn, order, where, atomic)
                    if slices.due(n):
                        await slices.pause()
                for piece in pieces:
                    await step.piece(piece, atomic, slices)
            except (PageHolderError, asyncio.CancelledError):
                # A failure of an atomic batch, or cancelled at a pause (shutdown): nothing
                # was submitted, so what was applied is taken back before the locks go.
                step.undo_all()
                raise
            # One submission and one revision: the batch commits whole or not at all.
            pending = registry.submit(step.ops, step.undo_all, step.events())
        finally:
            for zh in reversed(locked):
                zh.lock.writer_lock.release()
    await registry.durable(pending)
    return step.results


class _Steps:
    """What one batch did so far: its answers, its ops, and how to take it back."""

    def __init__(
        self, registry: Registry, holder: Holder, stamp: int, overwrite: bool, actor: Actor
    ) -> None:
        self.registry = registry
        self.holder = holder
        self.stamp = stamp
        self.overwrite = overwrite
        self.actor = actor
        self.results: list[Result] = []
        self.ops: list[Op] = []
        self._undo: list[Callable[[], None]] = []
        self._created: list[tuple[int, int]] = []
        self._overwritten: list[tuple[int, int]] = []
        self._previous: dict[str, None] = {}

    def events(self) -> list[EventBody]:
        """The batch's events, as ``batch.batch_set`` reports them."""
        return set_batch_events(self.holder.name, self._created, self._overwritten, self._previous)

    def single(
        self, pfn: int, order: int, where: ZoneHolds | PageHolderError, atomic: bool
    ) -> None:
        """One page entry, as ``batch.batch_set`` applies it."""
        registry, holder, stamp = self.registry, self.holder, self.stamp
        try:
            if isinstance(where, PageHolderError):
                raise where
            zh = where
            if registry.try_create(zh, pfn, order, holder, stamp):
                self._undo.append(lambda: registry.undo_create(zh, pfn, holder, stamp))
                self.ops.append(hold_op(pfn, order, holder, stamp))
                self.results.append(BatchItem(pfn, order, "created"))
                self._created.append((pfn, order))
                return
            result: SetResult = registry.apply_set(
                zh, pfn, order, holder, self.overwrite, self.actor, stamp
            )
        except PageHolderError as exc:
            if atomic:
                exc.extra.setdefault("pfn", pfn)
                raise
            self.results.append(BatchItem(pfn, order, "error", exc.code, exc.detail))
            return
        self._undo.append(lambda: registry.undo_set(zh, result))
        self.ops.extend(set_ops(result))
        self.results.append(BatchItem(pfn, order, result.status.value))
        if result.status is SetStatus.CREATED:
            self._created.append((pfn, order))
        elif result.status is SetStatus.OVERWRITTEN:
            self._overwritten.append((pfn, order))
            self._previous.update(dict.fromkeys(h.holder.name for h in result.previous))

    async def piece(self, piece: _Piece, atomic: bool, slices: Slices) -> None:
        """A range's piece: whole if it can, else page by page, in ``slices``."""
        zh, start, end = piece
        if zh is not None and self._whole(zh, start, end):
            if slices.over():
                await slices.pause()
            return
        for n, pfn in enumerate(range(start, end), 1):
            where: ZoneHolds | PageHolderError
            try:
                where = self.registry.place(pfn, 0) if zh is None else zh
            except PageHolderError as exc:
                where = exc
            self.single(pfn, 0, where, atomic)
            if slices.due(n):
                await slices.pause()

    def _whole(self, zh: ZoneHolds, start: int, end: int) -> bool:
        registry, holder, stamp = self.registry, self.holder, self.stamp
        try:
            registry.blocks.check_online(start, end)
        except PageHolderError:
            return False
        if not zh.fill(start, end, holder, stamp):
            return False

        def undo() -> None:
            for pfn in range(start, end):
                registry.undo_create(zh, pfn, holder, stamp)

        self._undo.append(undo)
        self.ops.append(hold_range_op(start, end - start, holder, stamp))
        self.results.append(CreatedRun(start, end - start))
        self._created.extend((pfn, 0) for pfn in range(start, end))
        return True

    def undo_all(self) -> None:
        """Take back every step, last first (an atomic failure, or a failed commit)."""
        for undo in reversed(self._undo):
            undo()
