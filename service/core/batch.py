"""Many holds in one request: batch-set and batch-unset, each entry answered alone, or
``atomic`` = all or nothing.

Every zone a batch touches is write-locked for the whole batch, always in zone order,
so two batches (atomic or not) cannot deadlock. An atomic batch applies its entries one
by one and, at the first failure, takes them back in reverse order before it raises
that failure.

A batch of 65,536 entries is a few hundred milliseconds of work, so it runs in slices
(``core.slices.Slices``: at most ``SLICE`` entries or ``SLICE_S`` seconds) with a yield to
the event loop in between, the zones' write locks held across the yields. What that
means for everybody else:

- requests in zones the batch does not touch (lookups, holds, offlines) run between
  its slices: they wait at most one slice;
- readers of a zone it touches wait for the whole batch, as before: a batch is one
  change (one commit, one revision), atomic or not, and nobody may see part of it.
  Their wait is bounded by the batch's own work, which is bounded by
  ``MAX_BATCH_ENTRIES``; letting them in between slices would need either a lock
  dropped mid-batch (a half-applied batch visible, and a batch no longer one change)
  or a copy of the zone to read from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple, Protocol, TypeVar, overload

from pageholder.service.core.collector import full_collections_deferred
from pageholder.service.core.errors import PageHolderError
from pageholder.service.core.events import EventBody, EventType, HoldsByHolder
from pageholder.service.core.journal import Op, hold_op, set_ops, unhold_ops
from pageholder.service.core.model import Hold, SetResult, SetStatus
from pageholder.service.core.registry import ADMIN, Actor, Registry
from pageholder.service.core.rules import MAX_BATCH_ENTRIES
from pageholder.service.core.slices import Slices
from pageholder.service.core.zone import ZoneHolds

__all__ = ["MAX_BATCH_ENTRIES", "BatchItem", "batch_set", "batch_unset", "expand"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class BatchItem(NamedTuple):
    pfn: int
    order: int
    status: str  # created | unchanged | overwritten | unset | error
    code: str | None = None
    detail: str | None = None


class Entries(Sequence[tuple[int, int]]):
    """``pages`` as given, then every order-0 page of each ``(start_pfn, nr_pages)`` range,
    made as they are read: a 65,536-page range is not 65,536 tuples built in one step
    before the batch's slices begin. Cost: O(1) to make, O(1) per entry read."""

    __slots__ = ("_pages", "_ranges", "_len")

    def __init__(self, pages: Sequence[tuple[int, int]], ranges: Sequence[tuple[int, int]]) -> None:
        self._pages = pages
        self._ranges = ranges
        self._len = len(pages) + sum(nr_pages for _, nr_pages in ranges)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[int, int]]:
        yield from self._pages
        for start, nr_pages in self._ranges:
            for pfn in range(start, start + nr_pages):
                yield pfn, 0

    @overload
    def __getitem__(self, index: int) -> tuple[int, int]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[int, int]]: ...
    def __getitem__(self, index: int | slice) -> tuple[int, int] | Sequence[tuple[int, int]]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        if index < len(self._pages):
            return self._pages[index]
        index -= len(self._pages)
        for start, nr_pages in self._ranges:
            if index < nr_pages:
                return start + index, 0
            index -= nr_pages
        raise AssertionError("unreachable: the lengths add up")


def expand(
    pages: Sequence[tuple[int, int]], ranges: Sequence[tuple[int, int]]
) -> Sequence[tuple[int, int]]:
    """``pages`` as given, then every order-0 page of each ``(start_pfn, nr_pages)`` range
    (``Entries``, made as they are read)."""
    return Entries(pages, ranges)


async def _run(
    registry: Registry,
    entries: Sequence[tuple[int, int]],
    locate: Callable[[int, int], ZoneHolds],
    apply: Callable[[ZoneHolds, int, int], tuple[str, T]],
    undo: Callable[[ZoneHolds, T], None],
    ops_of: Callable[[T], list[Op]],
    events: _Events[T],
    atomic: bool,
    recheck: Callable[[], None] | None = None,
) -> list[BatchItem]:
    placed: list[ZoneHolds | PageHolderError] = []
    touched: dict[int, ZoneHolds] = {}
    slices = Slices()
    for n, (pfn, order) in enumerate(entries, 1):
        try:
            zh = locate(pfn, order)
        except PageHolderError as exc:
            if atomic:
                raise
            placed.append(exc)
        else:
            placed.append(zh)
            touched[zh.zone.index] = zh
        if slices.due(n):
            await slices.pause()  # no lock held yet
    zones = sorted(touched.items())
    results: list[BatchItem] = []
    done: list[tuple[ZoneHolds, T]] = []
    locked: list[ZoneHolds] = []
    # Full collections wait for the batch (``core.collector``: they would walk every
    # tree node, again and again); young ones go on, a little in each slice.
    with full_collections_deferred():
        try:
            for _, zh in zones:
                await zh.lock.writer_lock.acquire()
                locked.append(zh)
            if recheck is not None:
                recheck()  # what may have changed while we waited for the locks
            # From here to the submission the touched zones stay write-locked: the awaits
            # below are pause()s between slices, and nobody can read or change these zones
            # meanwhile (the module docstring says what others see).
            ops: list[Op] = []
            journaled = registry.journal is not None

            def undo_all() -> None:
                for zh, token in reversed(done):
                    undo(zh, token)

            try:
                for n, ((pfn, order), where) in enumerate(zip(entries, placed, strict=True), 1):
                    if slices.due(n):
                        await slices.pause()
                    try:
                        if isinstance(where, PageHolderError):
                            raise where
                        status, token = apply(where, pfn, order)
                    except PageHolderError as exc:
                        if atomic:
                            undo_all()
                            done.clear()
                            exc.extra.setdefault("pfn", pfn)
                            raise
                        results.append(BatchItem(pfn, order, "error", exc.code, exc.detail))
                        continue
                    done.append((where, token))
                    if journaled:
                        ops.extend(ops_of(token))
                    events.add(token)  # grouped as it goes: the last step is O(holders)
                    results.append(BatchItem(pfn, order, status))
            except asyncio.CancelledError:
                # Cancelled at a pause (shutdown): nothing was submitted, so what was applied
                # is taken back, in one step, before the locks go.
                undo_all()
                raise

            # One submission and one revision: the batch commits whole or not at all.
            pending = registry.submit(ops, undo_all, events.bodies())
        finally:
            for zh in reversed(locked):
                zh.lock.writer_lock.release()
    await registry.durable(pending)
    return results


class _Events(Protocol[T_contra]):
    """A batch's events, gathered one applied entry (its token) at a time."""

    def add(self, token: T_contra) -> None: ...

    def bodies(self) -> list[EventBody]: ...


class _SetEvents:
    """A batch-set's events (``set_batch_events``), gathered token by token: a token is
    ``(pfn, order)`` of a hold the fast path made, or the ``SetResult`` of the general
    one."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self.created: list[tuple[int, int]] = []
        self.overwritten: list[tuple[int, int]] = []
        self.previous: dict[str, None] = {}

    def add(self, token: tuple[int, int] | SetResult) -> None:
        if not isinstance(token, SetResult):
            self.created.append(token)
        elif token.status is SetStatus.CREATED:
            self.created.append((token.hold.pfn, token.hold.order))
        elif token.status is SetStatus.OVERWRITTEN:
            self.overwritten.append((token.hold.pfn, token.hold.order))
            self.previous.update(dict.fromkeys(h.holder.name for h in token.previous))

    def bodies(self) -> list[EventBody]:
        return set_batch_events(self.holder, self.created, self.overwritten, self.previous)


class _UnsetEvents:
    """A batch-unset's events (``released_events(..., unset=True)``), hold by hold."""

    def __init__(self) -> None:
        self._grouped = HoldsByHolder(EventType.HOLD_UNSET)

    def add(self, hold: Hold) -> None:
        self._grouped.add(hold.holder.name, hold.pfn, hold.order)

    def bodies(self) -> list[EventBody]:
        return self._grouped.bodies()


def set_batch_events(
    holder: str,
    created: list[tuple[int, int]],
    overwritten: list[tuple[int, int]],
    previous: dict[str, None],
) -> list[EventBody]:
    """A batch-set's events: ``hold.created`` and ``hold.overwritten`` (naming the holders
    it took pages from), each only if it has holds."""
    events = []
    if created:
        events.append(EventBody(EventType.HOLD_CREATED, holder, tuple(created)))
    if overwritten:
        events.append(
            EventBody(
                EventType.HOLD_OVERWRITTEN, holder, tuple(overwritten), previous=tuple(previous)
            )
        )
    return events


async def batch_set(
    registry: Registry,
    holder_name: str,
    entries: Sequence[tuple[int, int]],
    *,
    overwrite: bool = False,
    atomic: bool = False,
    actor: Actor = ADMIN,
) -> list[BatchItem]:
    """Hold every ``(pfn, order)`` for one holder; all holds of a batch share one ``since``."""
    holder = registry.holder(holder_name)
    registry.authorize(actor, holder, "hold pages")
    stamp = registry.new_stamp()

    # A token is (pfn, order) of a hold made by the fast path (nothing overlapped), or
    # the SetResult of the general one.
    Token = tuple[int, int] | SetResult

    def apply(zh: ZoneHolds, pfn: int, order: int) -> tuple[str, Token]:
        if registry.try_create(zh, pfn, order, holder, stamp):
            return "created", (pfn, order)
        result = registry.apply_set(zh, pfn, order, holder, overwrite, actor, stamp)
        return result.status.value, result

    def undo(zh: ZoneHolds, token: Token) -> None:
        if isinstance(token, SetResult):
            registry.undo_set(zh, token)
        else:
            registry.undo_create(zh, token[0], holder, stamp)

    def ops_of(token: Token) -> list[Op]:
        if isinstance(token, SetResult):
            return set_ops(token)
        return [hold_op(token[0], token[1], holder, stamp)]

    def recheck() -> None:
        registry.check_enrolled(holder)
        registry.leases.check_may_hold(holder)  # an expired holder starts no hold

    events = _SetEvents(holder.name)

    return await _run(
        registry, entries, registry.place, apply, undo, ops_of, events, atomic, recheck
    )


async def batch_unset(
    registry: Registry,
    entries: Sequence[tuple[int, int]],
    *,
    atomic: bool = False,
    actor: Actor = ADMIN,
) -> list[BatchItem]:
    """Unset the hold whose head is each ``pfn`` (``order`` is not checked)."""

    def locate(pfn: int, order: int) -> ZoneHolds:
        return registry.zone_holds(pfn)

    def apply(zh: ZoneHolds, pfn: int, order: int) -> tuple[str, Hold]:
        return "unset", registry.apply_unset(zh, pfn, actor)

    def ops_of(hold: Hold) -> list[Op]:
        return unhold_ops([hold])

    return await _run(
        registry, entries, locate, apply, registry.undo_unset, ops_of, _UnsetEvents(), atomic
    )
