"""Changes between memory and the journal: the ones not committed yet, and how a failed
commit is taken back so that memory and the journal never diverge.

The registry changes memory first (under a zone's write lock) and submits the matching
ops from inside that critical section, so the journal sees changes in memory's order.
A journal commits submissions in that order and, once one fails, fails every later one
without trying it until ``resume()``: they were made in memory on top of the failed one
(an unset, then a hold on the pages it freed), so their ops may depend on it.

Unwinding a failure (one step for everybody else)::

    take every zone's write lock, in zone order      nobody is inside a critical section
    doomed = every submission from the failed one on  (they all fail: the journal is halted)
    run their undos newest first                     memory goes back change by change,
                                                      exactly to the journal's committed state
    journal.resume(); drop the locks; fail their futures (503 storage_unavailable)

Newest first is what makes undo exact: when a change is taken back, every change made
after it has been taken back already, so memory is exactly what that change left, and
its undo (an erase of the same generation, a restore of what it replaced) cannot find
its pages taken by someone else. An undo therefore never depends on the order the
failures were reported in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.events import Revision
from pageholder.service.core.journal import Journal, Op
from pageholder.service.core.zone import ZoneHolds


class _Pending(NamedTuple):
    undo: Callable[[], None]
    future: asyncio.Future[None]  # what the registry awaits: done after commit or unwind


class Commits:
    """The registry's side of its journal; see the module docstring."""

    def __init__(self, journal: Journal, zones: Sequence[ZoneHolds]) -> None:
        self.journal = journal
        self._zones = zones
        self._pending: dict[int, _Pending] = {}  # by submission number, ascending
        self._last = 0
        self._unwinding: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Submissions neither committed nor unwound yet."""
        return len(self._pending)

    def submit(
        self, ops: Sequence[Op], undo: Callable[[], None], revision: Revision | None = None
    ) -> asyncio.Future[None]:
        """Hand ``ops`` (and ``revision``, written in their transaction) to the journal;
        the future is done once they committed, or fails with ``StorageUnavailable`` once
        memory was put back (``undo`` ran). Call inside the critical section that made
        the change."""
        self._last += 1
        number = self._last
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[number] = _Pending(undo, future)
        committed = self.journal.submit(ops, None, revision)
        committed.add_done_callback(lambda done: self._landed(number, done))
        return future

    def _landed(self, number: int, done: asyncio.Future[None]) -> None:
        error: BaseException | None
        if done.cancelled():
            error = StorageUnavailable("the commit was cancelled")
        else:
            error = done.exception()
        pending = self._pending.get(number)
        if pending is None:  # unwound already (it failed because an earlier one did)
            return
        if error is None:
            del self._pending[number]
            if not pending.future.done():
                pending.future.set_result(None)
        elif self._unwinding is None:
            self._unwinding = asyncio.create_task(self._unwind(number, error))

    async def _unwind(self, failed: int, error: BaseException) -> None:
        locked: list[ZoneHolds] = []
        doomed: list[_Pending] = []
        try:
            # Every zone, in zone order (as batches take them: no deadlock). Whoever is
            # inside a critical section finishes it, and submits, first.
            for zh in self._zones:
                await zh.lock.writer_lock.acquire()
                locked.append(zh)
            for number in [n for n in self._pending if n >= failed]:
                doomed.append(self._pending.pop(number))
            broken: Exception | None = None
            for pending in reversed(doomed):
                try:
                    pending.undo()
                except Exception as exc:  # a bug; the other undos and futures must not wait
                    broken = broken or exc
            self.journal.resume()
            if broken is not None:
                raise broken
        finally:
            for zh in reversed(locked):
                zh.lock.writer_lock.release()
            self._unwinding = None
            detail = str(error) if isinstance(error, StorageUnavailable) else repr(error)
            for pending in doomed:
                if not pending.future.done():
                    pending.future.set_exception(StorageUnavailable(detail))
