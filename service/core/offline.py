"""Taking a memory block offline (hot-remove), the way the kernel's ``offline_pages()`` does.

    isolate   under the zone's write lock: the block becomes ``going_offline`` (from now
              on no hold may start in it, and no single-page release of one of its
              holds: ``Registry.release`` refuses it), then every hold that intersects
              it is looked up and marked ``releasing`` (a multi-order hold reaching past
              the block is released whole), slice by slice, the lock taken per slice
    reclaim   with ``reclaim_orphans``: the holds of expired holders (``orphaned``) are
              erased without a call, and listed under ``reclaimed``
    release   no lock held: holds without a release handler fail at once; every other
              holder gets ONE call with all of its pages in the block (the webhook
              caller splits it in chunks), holders concurrently with a bound, the whole
              round under ``deadline_s``
    settle    under the write lock, slice by slice: released holds are erased, the
              others are ``held`` again
    commit    the report is encoded (in slices, no lock); then under the write lock, in
              one step: if nothing is left held the block is ``offline``, and the erased
              holds, the state and the report are journaled as one revision
    cancel    otherwise (MEM_CANCEL_OFFLINE): the block is ``online`` again, unreleased
              holds are ``held`` again, released ones stay released

An orphaned hold that is not reclaimed is still asked for (its holder may only be cut
off), but briefly: a failure then says ``lease_expired`` (``Registry.call_holder``).

Answers that arrive after the deadline are never seen: the round's tasks are cancelled
when it ends, and the settle happens once, after that.

Why the zone's readers and writers may come in between the slices of isolate and
settle: from the moment the block is ``going_offline`` nobody else can start a hold or
a release in it, so what they can see or do there is what they could between two
single-page releases: a hold already ``releasing`` or not yet, already erased or
``held`` again (and then theirs to unset). Erasures are journaled at the commit, after
the memory change, as every change is; whatever is submitted in between touches other
pages. The block's state changes in one step, at the commit. Every slice is bounded by
time (``Slices``); no lock is held across the wait for the holders.

This module owns the blocks' states (``BlockStates``): only it changes them; the
registry asks it whether a hold may start (``check_online``) and recovery hands it what
the store kept (``recover``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from pageholder.service.core.errors import (
    BlockNotFound,
    BlockNotOffline,
    BlockNotOnline,
    MultizoneBlock,
    OfflineFailed,
)
from pageholder.service.core.events import EventBody, EventType, block_event
from pageholder.service.core.journal import Op, block_op
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import (
    BlockState,
    FailureReason,
    Hold,
    Holder,
    HoldState,
    PageFailure,
    PageRef,
    ReleaseAnswer,
)
from pageholder.service.core.offline_report import OfflineFailure, OfflineReport, ReclaimedHold
from pageholder.service.core.radix import Entry
from pageholder.service.core.registry import Registry
from pageholder.service.core.rules import DEFAULT_DEADLINE_S
from pageholder.service.core.slices import Slices
from pageholder.service.core.zone import RELEASING, ZoneHolds

__all__ = [
    "HOLDER_CONCURRENCY",
    "BlockStates",
    "OfflineFailure",
    "OfflineReport",
    "ReclaimedHold",
    "offline_block",
    "online_block",
]

HOLDER_CONCURRENCY = 16


class BlockStates:
    """Every memory block's state; a block not in the map is ``online``.

    Read under a zone's write lock by whoever starts a hold (``check_online``: that is
    what makes an offline's isolation race-free); changed only by this module.
    """

    __slots__ = ("_layout", "_states")

    def __init__(self, layout: MemoryLayout) -> None:
        self._layout = layout
        self._states: dict[int, BlockState] = {}

    def state(self, block: int) -> BlockState:
        return self._states.get(block, BlockState.ONLINE)

    def check_online(self, start: int, end: int) -> None:
        """Refuse a hold of ``[start, end)`` in a block that is not online.
        Cost: O(1) while every block is online, O(blocks spanned) otherwise."""
        if not self._states:
            return
        per_block = self._layout.pages_per_block
        for block in range(start // per_block, (end - 1) // per_block + 1):
            state = self._states.get(block, BlockState.ONLINE)
            if state is not BlockState.ONLINE:
                raise BlockNotOnline(
                    f"memory block {block} is {state.value}", block=block, state=state.value
                )

    def offlining(self, start: int, end: int) -> bool:
        """Whether a block of ``[start, end)`` is going offline (its holds are the
        offline's to release). Cost: O(1) while every block is online."""
        if not self._states:
            return False
        per_block = self._layout.pages_per_block
        return any(
            self._states.get(block) is BlockState.GOING_OFFLINE
            for block in range(start // per_block, (end - 1) // per_block + 1)
        )

    def recover(self, stored: Mapping[int, str]) -> None:
        """Take what the store kept: ``offline`` blocks stay offline; anything else (a
        ``going_offline`` that a crash interrupted) comes back online."""
        for block, state in stored.items():
            if state == BlockState.OFFLINE.value:
                self._states[block] = BlockState.OFFLINE

    def follow(self, block: int, stored: str | None) -> None:
        """Take one block's stored state (None: no row, online), as ``recover`` would: a
        standby following the leader's commits (``storage.changes``)."""
        if stored == BlockState.OFFLINE.value:
            self._states[block] = BlockState.OFFLINE
        else:
            self._states.pop(block, None)

    def clear(self) -> None:
        """Every block online (a registry emptied to be loaded again)."""
        self._states.clear()

    def _set(self, block: int, state: BlockState) -> Op:
        """Change a block's state; returns the op that makes it durable."""
        if state is BlockState.ONLINE:
            self._states.pop(block, None)
        else:
            self._states[block] = state
        return block_op(block, state)


async def offline_block(
    registry: Registry,
    block_id: int,
    *,
    deadline_s: float = DEFAULT_DEADLINE_S,
    concurrency: int = HOLDER_CONCURRENCY,
    reclaim_orphans: bool = False,
) -> OfflineReport:
    """Isolate, release and commit or cancel one memory block; see the module docstring.

    Returns the report of an offline block; raises ``OfflineFailed`` (with the report)
    when anything stayed held.
    """
    started = time.monotonic()
    block = registry.layout.block(block_id)
    if block is None:
        raise BlockNotFound(f"memory block {block_id} does not exist", block=block_id)
    if block.multizone:
        zones = ", ".join(z.id for z in block.zones)
        raise MultizoneBlock(
            f"memory block {block_id} spans zones {zones} and cannot be offlined",
            block=block_id,
        )
    zh = registry.zones[block.zone.index]
    entries = await _isolate(registry, zh, block_id, block.start_pfn, block.end_pfn)
    answers: dict[int, PageFailure | None] = {}
    reclaim: set[int] = set()
    calls = 0
    try:
        by_holder: dict[Holder, list[PageRef]] = {}
        slices = Slices()
        for entry in entries:
            holder = entry.value
            assert isinstance(holder, Holder)
            if reclaim_orphans and holder.expired:
                reclaim.add(entry.head)
                answers[entry.head] = None  # erased at the commit, nobody asked
            elif holder.has_release_handler:
                refs = by_holder.get(holder)
                if refs is None:
                    refs = by_holder[holder] = []
                refs.append(PageRef(entry.head, entry.order))
            else:
                answers[entry.head] = PageFailure(
                    FailureReason.NO_RELEASE_HANDLER,
                    f"holder {holder.name!r} has no release handler",
                )
            if slices.due():
                await slices.pause()
        calls = await _release_round(
            registry, block_id, by_holder, answers, deadline_s, concurrency
        )
    finally:
        # Also on cancellation (shutdown): whatever did not answer stays held. A task of
        # its own, shielded: the settle yields between slices, and a cancellation landing
        # there must not leave it half done (erased in memory, never journaled).
        settling = asyncio.create_task(
            _settle(
                registry,
                zh,
                block_id,
                block.start_pfn,
                block.end_pfn,
                entries,
                answers,
                reclaim,
                calls,
                started,
            )
        )
        report = await asyncio.shield(settling)
    if report.state != BlockState.OFFLINE:
        failed = OfflineFailed(
            f"memory block {block_id} stays online: "
            f"{len(report.failures)} hold(s) were not released",
            block=block_id,
            report=report.as_dict(),
        )
        failed.report_json = report.json
        raise failed
    return report


async def _isolate(
    registry: Registry, zh: ZoneHolds, block_id: int, start: int, end: int
) -> list[Entry]:
    """Mark the block going_offline and its holds releasing; returns the holds.

    A hold whose single-page release is in flight is waited for first (outside the lock),
    so that the offline never shares a hold with another release.
    """
    while True:
        async with zh.lock.writer_lock:
            state = registry.block_state(block_id)
            if state is not BlockState.ONLINE:
                raise BlockNotOnline(
                    f"memory block {block_id} is {state.value}", block=block_id, state=state.value
                )
            busy = [e for e in zh.tree.marked(RELEASING, start, end)]
            if not busy:
                registry.blocks._set(block_id, BlockState.GOING_OFFLINE)  # never journaled
                # Its own revision (the event is kept; the state is not). Not awaited: the
                # settle's revision comes after it in the journal whatever happens.
                going = [block_event(EventType.BLOCK_GOING_OFFLINE, block_id)]
                registry.submit([], _nothing_to_undo, going)
                break
            waits = [registry.release_in_flight(zh, e) for e in busy]
        # No lock while a single-page release finishes (it is bounded by its timeout).
        await asyncio.gather(*(w for w in waits if w is not None), return_exceptions=True)
        if all(w is None for w in waits):
            await asyncio.sleep(0.01)  # marked by a settle that is about to run
    entries: list[Entry] = []
    try:
        await _mark(zh, start, end, entries)
    except asyncio.CancelledError:  # shutdown: as if it never started
        await asyncio.shield(asyncio.create_task(_unmark(registry, zh, block_id, entries)))
        raise
    return entries


async def _mark(zh: ZoneHolds, start: int, end: int, entries: list[Entry]) -> None:
    """Mark every hold intersecting ``[start, end)`` releasing, appending it to
    ``entries``; the zone's write lock is taken per slice. Holds cannot start in the
    block meanwhile; one unset before it is marked is simply not there any more."""
    tree = zh.tree
    at = start
    while at < end:
        async with zh.lock.writer_lock:
            slices = Slices()
            for entry in tree.items(at, end):
                tree.set_mark(entry.head, RELEASING)
                entries.append(entry)
                at = entry.head + (1 << entry.order)  # holds never overlap: resume there
                if slices.due():
                    break
            else:
                return
        await slices.pause()


async def _unmark(registry: Registry, zh: ZoneHolds, block_id: int, entries: list[Entry]) -> None:
    """Take an interrupted isolate back: the marked holds (still there) and the block."""
    async with zh.lock.writer_lock:
        for entry in entries:
            holder = entry.value
            assert isinstance(holder, Holder)
            if zh.current(entry.head, entry.stamp, holder) is not None:
                zh.tree.clear_mark(entry.head, RELEASING)
        registry.blocks._set(block_id, BlockState.ONLINE)
        # Watchers were told it is going offline: tell them it is not (never journaled).
        online = [block_event(EventType.BLOCK_ONLINE, block_id)]
        registry.submit([], _nothing_to_undo, online)


async def _release_round(
    registry: Registry,
    block_id: int,
    by_holder: dict[Holder, list[PageRef]],
    answers: dict[int, PageFailure | None],
    deadline_s: float,
    concurrency: int,
) -> int:
    """One call per holder, concurrently (bounded), all under the deadline. No lock held."""
    bound = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s

    async def ask(holder: Holder, refs: list[PageRef]) -> ReleaseAnswer:
        async with bound:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return ReleaseAnswer.all_failed(
                    refs, FailureReason.DEADLINE_EXCEEDED, "the offline deadline passed", calls=0
                )
            return await registry.call_holder(
                holder,
                refs,
                reason="offline",
                block=block_id,
                timeout_s=remaining,
                timeout_reason=FailureReason.DEADLINE_EXCEEDED,
            )

    holders = list(by_holder)
    results = await asyncio.gather(*(ask(h, by_holder[h]) for h in holders))
    calls = 0
    slices = Slices()
    for answer in results:
        calls += answer.calls
        for pfn in answer.released:
            answers[pfn] = None
            if slices.due():
                await slices.pause()
        for pfn, failure in answer.failed.items():
            answers[pfn] = failure
            if slices.due():
                await slices.pause()
    return calls


async def _settle(
    registry: Registry,
    zh: ZoneHolds,
    block_id: int,
    start: int,
    end: int,
    entries: list[Entry],
    answers: dict[int, PageFailure | None],
    reclaim: set[int],
    calls: int,
    started: float,
) -> OfflineReport:
    """Put every hold of ``entries`` back (erased or held), then commit; no cancellation
    can land in it: the offline's finally awaits it shielded."""
    report = OfflineReport(block_id, BlockState.ONLINE.value, webhook_calls=calls)
    unanswered = PageFailure(FailureReason.DEADLINE_EXCEEDED, "the offline ended before an answer")
    erased: list[Hold] = []
    reclaimed: list[Hold] = []
    failures = report.failures
    n = 0
    while n < len(entries):
        async with zh.lock.writer_lock:
            slices = Slices()
            while n < len(entries):
                entry = entries[n]
                n += 1
                holder = entry.value
                assert isinstance(holder, Holder)
                failure = answers.get(entry.head, unanswered)
                if zh.settle(entry, failure is None, failure and failure.detail):
                    hold = Hold(entry.head, entry.order, holder, HoldState.HELD, entry.stamp)
                    if entry.head in reclaim:
                        reclaimed.append(hold)
                        report.reclaimed.append(
                            ReclaimedHold(holder=holder.name, pfn=entry.head, order=entry.order)
                        )
                        registry.leases.reclaimed(holder, [hold])
                    else:
                        erased.append(hold)
                        report.released_holds += 1
                        report.released_pages += 1 << entry.order
                elif failure is not None and zh.current(entry.head, entry.stamp, holder):
                    # (not gone meanwhile: a hold reclaimed with its holder is not held)
                    failures.append(
                        OfflineFailure(
                            holder=holder.name,
                            pfn=entry.head,
                            order=entry.order,
                            reason=failure.reason.value,
                            detail=failure.detail,
                        )
                    )
                if slices.due():
                    break
        await slices.pause()
    if not failures:
        report.state = BlockState.OFFLINE.value
    report.duration_ms = round((time.monotonic() - started) * 1000, 3)
    encoded = await report.encoded()
    async with zh.lock.writer_lock:
        # One step: the block's state and the revision that journals the settle.
        more: list[Op] = []
        if not failures and zh.tree.count_entries(start, end) == 0:
            more.append(registry.blocks._set(block_id, BlockState.OFFLINE))
        else:
            registry.blocks._set(block_id, BlockState.ONLINE)  # going_offline was not journaled
            if report.state != BlockState.ONLINE.value:
                # A hold came back meanwhile (an unwound commit restored it): not offline.
                report.state = BlockState.ONLINE.value
                encoded = report.encoded_now()

        def undo() -> None:  # the commit failed: the block is online, holds held again
            registry.blocks._set(block_id, BlockState.ONLINE)

        outcome = (
            EventType.BLOCK_OFFLINE
            if report.state == BlockState.OFFLINE.value
            else EventType.BLOCK_OFFLINE_FAILED
        )
        events: list[EventBody] = [block_event(outcome, block_id, encoded)]
        pending = registry.journal_erased(zh, erased, more, undo, events, reclaimed)
    await registry.durable(pending)
    return report


async def online_block(registry: Registry, block_id: int) -> BlockState:
    """Bring an offline block back (new holds may start in it again)."""
    if registry.layout.block(block_id) is None:
        raise BlockNotFound(f"memory block {block_id} does not exist", block=block_id)
    state = registry.block_state(block_id)
    if state is not BlockState.OFFLINE:
        raise BlockNotOffline(
            f"memory block {block_id} is {state.value}", block=block_id, state=state.value
        )
    op = registry.blocks._set(block_id, BlockState.ONLINE)

    def undo() -> None:
        registry.blocks._set(block_id, BlockState.OFFLINE)

    online = [block_event(EventType.BLOCK_ONLINE, block_id)]
    await registry.durable(registry.submit([op], undo, online))
    return BlockState.ONLINE


def _nothing_to_undo() -> None:
    """A going_offline is never journaled: a failed commit of its event leaves the state."""
