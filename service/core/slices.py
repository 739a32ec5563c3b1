"""Long work in bounded slices, and every zone locked at once.

The event loop runs one step at a time: a synchronous section that walks 65,536 holds
keeps every other request waiting for as long as it runs. Work that can be that long
does ``SLICE`` items, then ``await pause()``: other requests (lookups in zones this work
has not locked, health checks, webhook answers) run in between. A slice of 4,096 holds
is a few milliseconds -- or 70 ms, for work that costs 17 µs an item on a busy machine
(a batch-unset's entry), and a lookup needs a few turns of the loop, each one waiting
out a slice. ``Slices`` also cuts by time: a slice ends after ``SLICE`` items or
``SLICE_S`` seconds, whichever comes first.

Yielding while a zone's write lock is held is deliberate: readers of that zone wait
(an atomic batch stays all-or-nothing for them), everything else goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Final

from pageholder.service.core.model import Holder
from pageholder.service.core.radix import Entry
from pageholder.service.core.zone import ZoneHolds

#: items of synchronous work between two yields to the event loop
SLICE: Final = 4096
#: the longest one slice of synchronous work keeps the event loop, seconds
SLICE_S: Final = 0.004
#: items between two readings of the clock (a reading is ~50 ns; an item, 1-20 µs)
CHECK_EVERY: Final = 64


async def pause() -> None:
    """Let every other ready task run once."""
    await asyncio.sleep(0)


class Slices:
    """Where a long loop yields: ``if slices.due(n): await slices.pause()`` after its
    ``n``-th item ends a slice every ``SLICE`` items or once ``SLICE_S`` seconds passed
    since the slice began (the clock is read every ``CHECK_EVERY`` items)."""

    __slots__ = ("_end",)

    def __init__(self) -> None:
        self._end = perf_counter() + SLICE_S

    def due(self, n: int) -> bool:
        """Whether the slice is over after ``n`` items (counted from 1). Cost: O(1)."""
        return not n % CHECK_EVERY and (not n % SLICE or perf_counter() >= self._end)

    def over(self) -> bool:
        """Whether ``SLICE_S`` passed since the slice began. Cost: one clock reading."""
        return perf_counter() >= self._end

    async def pause(self) -> None:
        """``pause()``, and a new slice begins."""
        await pause()
        self._end = perf_counter() + SLICE_S


@asynccontextmanager
async def all_zones_written(zones: Sequence[ZoneHolds]) -> AsyncIterator[None]:
    """Every zone's write lock, taken in zone order (as batches take theirs: two such
    sections cannot deadlock) and dropped in reverse."""
    locked: list[ZoneHolds] = []
    try:
        for zh in zones:
            await zh.lock.writer_lock.acquire()
            locked.append(zh)
        yield
    finally:
        for zh in reversed(locked):
            zh.lock.writer_lock.release()


async def entries_of(zones: Iterable[ZoneHolds], holder: Holder) -> list[tuple[ZoneHolds, Entry]]:
    """Every entry of ``holder``, zone by zone, yielding between slices of the scan; the
    caller holds the zones' write locks. Cost: O(entries), in slices of ``SLICE``."""
    found: list[tuple[ZoneHolds, Entry]] = []
    for zh in zones:
        seen = 0
        for entry in zh.tree.items():
            if entry.value is holder:
                found.append((zh, entry))
            seen += 1
            if seen % SLICE == 0:
                # The tree cannot change meanwhile: its write lock is ours.
                await pause()
    return found
