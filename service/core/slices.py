"""Long work in bounded slices, and every zone locked at once.

The event loop runs one step at a time: a synchronous section that walks 65,536 holds
keeps every other request waiting for as long as it runs. Work that can be that long
runs in slices with ``await pause()`` between them: other requests (lookups in zones
this work has not locked, health checks, webhook answers) run in between.

A count of items is a poor bound when an item's cost varies (a radix walk, a JSON
object; a batch-unset's entry is 17 µs on a busy machine) and the machine is loaded:
``Slices`` ends a slice after ``SLICE`` items or ``SLICE_S`` seconds of work, whichever
comes first (the clock read every ``CHECK_EVERY`` items). A request needs a few turns
of the loop to be answered, so what it waits for is a few slices, not one: hence
slices of 2 ms.

Yielding while a zone's write lock is held is deliberate: readers of that zone wait
(an atomic batch stays all-or-nothing for them), everything else goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Final

from pageholder.service.core.zone import ZoneHolds

#: items of synchronous work between two yields to the event loop, at most
SLICE: Final = 4096
#: the longest one slice of synchronous work keeps the event loop, seconds
SLICE_S: Final = 0.002
#: items between two readings of the clock (a reading is ~50 ns; an item, 1-20 µs)
CHECK_EVERY: Final = 64


async def pause() -> None:
    """Let every other ready task run once."""
    await asyncio.sleep(0)


class Slices:
    """Where a long loop yields::

        slices = Slices()
        for n, item in enumerate(items, 1):
            work(item)
            if slices.due(n):  # or slices.due(): items counted here
                await slices.pause()

    A slice ends after ``SLICE`` items or once ``SLICE_S`` seconds passed since it
    began (the clock is read every ``CHECK_EVERY`` items)."""

    __slots__ = ("_count", "_end")

    def __init__(self) -> None:
        self._count = 0
        self._end = perf_counter() + SLICE_S

    def due(self, n: int | None = None) -> bool:
        """Whether the slice is over after the ``n``-th item (counted from 1; without
        ``n``, one more item than the last call). Cost: O(1)."""
        if n is None:
            self._count += 1
            n = self._count
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
