"""Group commit, shared by every store: one writer thread, submissions in order.

The registry changes its trees first, under a zone's write lock, and *submits* the
matching ops from inside that lock, so a store sees changes in exactly the order memory
saw them. It acknowledges a change only when the future that ``submit`` returned is
done, that is after the transaction holding it committed.

The writer thread takes every submission waiting in its queue, applies them all in one
transaction (``_transaction``, the store's own) and commits once, so N concurrent
writers pay for one commit, not N. A failed transaction is retried submission by
submission, in order, up to the first one that fails on its own: that one gets
``StorageUnavailable`` (and its ``on_failure`` callback runs on the event loop), and so
does every submission after it, untried, until the registry calls ``resume()``: they
were made in memory on top of the failed one (``core.commits`` takes them all back,
newest first). Whatever goes wrong in the writer fails the group it was writing; the
thread itself keeps going, so no later write waits forever.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.events import Revision
from pageholder.service.core.journal import Op

log = logging.getLogger("pageholder.store")

MAX_GROUP = 512  # submissions per transaction
#: Revisions kept at least (the events setting overrides it).
DEFAULT_RETENTION = 100_000


@dataclass(slots=True)
class _Submission:
    ops: Sequence[Op]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    on_failure: Callable[[], None] | None
    revision: Revision | None = None


_STOP = object()
_RESUME = object()  # the registry put memory back: later submissions may commit again


class GroupCommit:
    """The writer side of a store; a subclass writes one transaction
    (``_transaction``) and deletes old revisions (``_compact``)."""

    #: what log lines name (a path, or a database without its password)
    description: str = "store"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed (group commit makes this < submissions)
        self.retention = DEFAULT_RETENTION
        self.compacted_through = 0  # revisions up to this one are deleted
        self._last_rev = 0  # the newest revision written (writer thread)

    def _transaction(self, ops: Sequence[Op], revisions: Sequence[Revision] = ()) -> None:
        raise NotImplementedError

    def _compact(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="pageholder-store", daemon=True)
        self._thread.start()

    def submit(
        self,
        ops: Sequence[Op],
        on_failure: Callable[[], None] | None = None,
        revision: Revision | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``ops`` (and ``revision``'s event row) for one transaction; the future is
        done once they committed.

        Call it from the event loop, inside the critical section that made the change.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Submission(ops, future, loop, on_failure, revision))
        return future

    def resume(self) -> None:
        """Commit again after a failure: what is submitted from now on is tried."""
        self._queue.put(_RESUME)

    async def _stop_writer(self) -> None:
        """Finish what was submitted and stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def _writer(self) -> None:
        halted = False  # a submission failed: fail the later ones until _RESUME
        carried: object = None
        while True:
            item = self._queue.get() if carried is None else carried
            carried = None
            if item is _STOP:
                return
            if item is _RESUME:
                halted = False
                continue
            assert isinstance(item, _Submission)
            if halted:
                self._fail(item, _EARLIER_FAILED)
                continue
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Submission):
                    carried = more  # _STOP or _RESUME: after this group
                    break
                group.append(more)
            try:
                halted = not self._commit_group(group)
            except Exception as exc:  # a bug, not the disk: fail the group, keep writing
                log.exception("store %s: the writer failed", self.description)
                for submission in group:
                    self._fail(submission, exc)
                halted = True

    def _commit_group(self, group: list[_Submission]) -> bool:
        """Commit ``group``; False if a submission failed (it and the later ones are failed)."""
        try:
            self._transaction(
                [op for s in group for op in s.ops],
                [s.revision for s in group if s.revision is not None],
            )
        except Exception as exc:
            if len(group) == 1 or not self._retry_singly(exc):
                self._fail(group[0], exc)
                for later in group[1:]:
                    self._fail(later, _EARLIER_FAILED)
                return False
            for i, submission in enumerate(group):  # one by one: the ones before stand
                try:
                    self._transaction(submission.ops, _listed(submission.revision))
                except Exception as single:
                    self._fail(submission, single)
                    for later in group[i + 1 :]:
                        self._fail(later, _EARLIER_FAILED)
                    self._compact()
                    return False
                _resolve(submission, None)
            self._compact()
            return True
        for submission in group:
            _resolve(submission, None)
        self._compact()
        return True

    def _retry_singly(self, exc: Exception) -> bool:
        """Whether a group that failed with ``exc`` is worth retrying one by one (not
        when the store itself is gone, only when one submission may be at fault)."""
        return True

    def _fail(self, submission: _Submission, exc: Exception) -> None:
        if exc is not _EARLIER_FAILED:
            log.error("store %s: commit failed: %s", self.description, exc)
        error = StorageUnavailable(f"the change was not saved: {exc}")
        _resolve(submission, error)


_EARLIER_FAILED = StorageUnavailable("an earlier change it depends on was not saved")


def _listed(revision: Revision | None) -> list[Revision]:
    return [] if revision is None else [revision]


def _resolve(submission: _Submission, error: StorageUnavailable | None) -> None:
    def done() -> None:
        if error is not None and submission.on_failure is not None:
            submission.on_failure()
        if not submission.future.done():
            if error is None:
                submission.future.set_result(None)
            else:
                submission.future.set_exception(error)

    try:
        submission.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
