"""Long work in bounded slices, and every zone locked at once.

The event loop runs one step at a time: a synchronous section that walks 65,536 holds
keeps every other request waiting for as long as it runs. Work that can be that long
does ``SLICE`` items, then ``await pause()``: other requests (lookups in zones this work
has not locked, health checks, webhook answers) run in between. A slice of 4,096 holds
is a few milliseconds.

Yielding while a zone's write lock is held is deliberate: readers of that zone wait
(an atomic batch stays all-or-nothing for them), everything else goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Final

from pageholder.service.core.zone import ZoneHolds

#: items of synchronous work between two yields to the event loop
SLICE: Final = 4096


async def pause() -> None:
    """Let every other ready task run once."""
    await asyncio.sleep(0)


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
