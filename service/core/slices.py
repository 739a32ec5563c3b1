"""Long work in bounded slices, and every zone locked at once.

The event loop runs one step at a time: a synchronous section that walks 65,536 holds
keeps every other request waiting for as long as it runs. Work that can be that long
does ``SLICE`` items, then ``await pause()``: other requests (lookups in zones this work
has not locked, health checks, webhook answers) run in between. A slice of 4,096 holds
is a few milliseconds.

Yielding while a zone's write lock is held is deliberate: readers of that zone wait
(an atomic batch stays all-or-nothing for them), everything else goes on.

A count of items is a poor bound when an item's cost varies (a radix walk, a JSON
object) and the machine is loaded: ``Pacer`` bounds a slice by time instead (``SLICE_S``
of work, the clock read every ``CHECK_EVERY`` items). A request needs a few turns of
the loop to be answered, so what it waits for is a few slices, not one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Final

from pageholder.service.core.model import Holder
from pageholder.service.core.radix import Entry
from pageholder.service.core.zone import ZoneHolds

#: items of synchronous work between two yields to the event loop
SLICE: Final = 4096


#: the longest a ``Pacer``'s slice runs before it yields (seconds)
SLICE_S: Final = 0.002
#: items between two looks at the clock
CHECK_EVERY: Final = 64


async def pause() -> None:
    """Let every other ready task run once."""
    await asyncio.sleep(0)


class Pacer:
    """Slices by time: ``due()`` once per item says when ``SLICE_S`` has passed since
    the last yield, ``await pause()`` yields and starts the next slice::

        pacer = Pacer()
        for item in items:
            work(item)
            if pacer.due():
                await pacer.pause()
    """

    __slots__ = ("_count", "_until")

    def __init__(self) -> None:
        self._count = 0
        self._until = time.perf_counter() + SLICE_S

    def due(self) -> bool:
        self._count += 1
        if self._count < CHECK_EVERY:
            return False
        self._count = 0
        return time.perf_counter() >= self._until

    async def pause(self) -> None:
        await pause()
        self._count = 0
        self._until = time.perf_counter() + SLICE_S


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
