"""Work on every hold of one holder, zone by zone, in slices.

A holder may have a million holds. Re-marking them (its release handler came or went)
or erasing them (a forced delete) takes seconds, so it goes through the holder's index
of heads (``heads.py``; a holder with no holds in a zone costs nothing there) one zone
at a time, in steps of at most ``SLICE`` holds and about ``STEP_S``: each step takes
that zone's write lock, changes its holds synchronously and drops the lock, then the
sweep *rests* as long as the step took. Lookups and changes in every zone, this one
included, run between steps.

Why rest rather than ``pause()`` (one turn of the loop, as batches do): a request needs
a few turns of the loop (read, route, answer), so with a step in every turn a client
sending a lookup every 10 ms falls behind for as long as the sweep runs, which is
seconds here (measured: p99 in seconds). Resting as long as it worked leaves the loop
idle half the time: a lookup waits at most about one step, and the sweep takes about
twice its work. What they may see in between is
decided by the caller (``registry.py`` says it for each change); a step itself is never
seen half done.

A step reads the index when its turn comes, not a list made at the start: holds made
or dropped meanwhile by others are seen as they are then. ``go_on()`` is asked at the
start of every step, under the lock: when it says no (the change was taken back by a
failed commit meanwhile), the sweep stops there.

``HolderLocks`` lets one change of a holder run at a time: a PATCH that re-marks must
not interleave with another PATCH or a delete of the same holder.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from pageholder.service.core.model import Hold, Holder, HoldState
from pageholder.service.core.slices import SLICE
from pageholder.service.core.zone import ZoneHolds

#: a step's time budget (checked after each group of up to 64 holds)
STEP_S: Final = 0.002


async def sweep(
    zones: Sequence[ZoneHolds],
    holder: Holder,
    step: Callable[[ZoneHolds, int], None],
    go_on: Callable[[], bool],
) -> bool:
    """Call ``step(zh, head)`` for every hold of ``holder``, zone by zone, at most
    ``SLICE`` (or ``STEP_S``) per write-locked step, resting between steps. Returns
    False if ``go_on()`` stopped it. Cost: O(zones) without holds, else O(holds) of
    work in steps, and as long again resting."""
    for zh in zones:
        if not zh.heads.has(holder):
            continue  # nothing of it here; what it holds here later is not ours to change
        groups = zh.heads.groups(holder)
        at = 0
        while at < len(groups):
            began = time.perf_counter()
            async with zh.lock.writer_lock:
                if not go_on():
                    return False
                started = time.perf_counter()
                done = 0
                while at < len(groups) and done < SLICE:
                    heads = zh.heads.heads_in(holder, groups[at])
                    for head in heads:
                        step(zh, head)
                    done += len(heads)
                    at += 1
                    if time.perf_counter() - started > STEP_S:
                        break
            # The lock is dropped: readers and writers of this zone go first, and the
            # loop is left idle as long as this step kept it (module docstring).
            await asyncio.sleep(time.perf_counter() - began)
    return True


async def remark(zones: Sequence[ZoneHolds], holder: Holder, has_handler: bool) -> bool:
    """Every hold of ``holder`` follows ``has_handler`` (its NO_HANDLER mark), in slices,
    while ``holder.no_handler_mark`` still says the opposite of ``has_handler``; returns
    False if that changed under it (a failed commit took the change back)."""

    def step(zh: ZoneHolds, head: int) -> None:
        zh.mark_head(head, has_handler)

    return await sweep(zones, holder, step, lambda: holder.no_handler_mark != has_handler)


@dataclass(eq=False)
class Erased:
    """The holds a sweep erased, compactly (three ints a hold, no object per hold), so
    that a failed commit can put them back."""

    by_zone: dict[ZoneHolds, tuple[array[int], bytearray, array[int]]] = field(
        default_factory=dict
    )
    count: int = 0
    taken_back: bool = False

    def note(self, zh: ZoneHolds, head: int, order: int, stamp: int) -> None:
        kept = self.by_zone.get(zh)
        if kept is None:
            kept = self.by_zone[zh] = (array("q"), bytearray(), array("q"))
        kept[0].append(head)
        kept[1].append(order)
        kept[2].append(stamp)
        self.count += 1

    def holds(self, holder: Holder) -> list[tuple[ZoneHolds, Hold]]:
        return [
            (zh, Hold(head, order, holder, HoldState.HELD, stamp))
            for zh, (heads, orders, stamps) in self.by_zone.items()
            for head, order, stamp in zip(heads, orders, stamps, strict=True)
        ]


async def erase_all(zones: Sequence[ZoneHolds], holder: Holder, erased: Erased) -> bool:
    """Erase every hold of ``holder`` in slices, noting them in ``erased``, until
    ``erased.taken_back``; returns False if that stopped it. A hold being released is
    erased too: its settle then finds another generation and changes nothing."""

    def step(zh: ZoneHolds, head: int) -> None:
        entry = zh.tree.load(head)
        assert entry is not None and entry.value is holder and entry.head == head
        erased.note(zh, head, entry.order, entry.stamp)
        zh.erase(entry)

    return await sweep(zones, holder, step, lambda: not erased.taken_back)


class HolderLocks:
    """One change at a time per holder; a lock exists only while someone uses it."""

    def __init__(self) -> None:
        self._locks: dict[Holder, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def one_at_a_time(self, holder: Holder) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(holder, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[holder]
