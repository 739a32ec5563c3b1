"""The revision counter, the recent revisions, and the watchers they are handed to.

``EventLog`` numbers every change (``next``: inside the critical section that made it,
so revisions follow the journal's order), and once the change is committed
(``publish``: from the commit's future, or at once without a journal) keeps it among
the recent revisions and offers it to every ``Watcher``.

Nothing here awaits on the publishing side: a watcher is a bounded buffer. One that
falls more than ``limit`` parts behind is marked *overflowed*, dropped from the log and
its buffer freed; its stream then says ``overflow`` and ends, and the client resumes
from the last revision it got. So a slow reader costs the registry at most ``limit``
references, and never a wait.

Recent revisions are kept (``keep`` revisions, and at most ``keep_weight`` parts plus
holds when a store holds the rest) so that a watcher that resumes from a recent
revision is served from memory; ``evicted_through`` is the last revision no longer
here. Without a store this is the whole history the registry has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Final

from pageholder.service.core.events import Event, EventBody, Revision

#: Revisions kept in memory by default (the retention of a registry without a store).
DEFAULT_KEEP: Final = 100_000
#: Parts one watcher may have waiting before it overflows.
DEFAULT_WATCHER_LIMIT: Final = 4096


def visible(
    revision: Revision, viewer: str | None, categories: frozenset[str] | None
) -> list[Event]:
    """The parts of ``revision`` that ``viewer`` (None: the admin) is shown, of
    ``categories`` (None: all). Cost: O(parts)."""
    return [
        e
        for e in revision.parts()
        if (categories is None or e.type.category in categories) and e.visible_to(viewer)
    ]


class Watcher:
    """One subscriber's buffer: the visible parts of each revision, in revision order."""

    __slots__ = (
        "viewer",
        "categories",
        "limit",
        "overflowed",
        "closed",
        "_log",
        "_buffer",
        "_waiting",
        "_ready",
    )

    def __init__(
        self,
        log: EventLog,
        viewer: str | None,
        categories: frozenset[str] | None,
        limit: int,
    ) -> None:
        self.viewer = viewer  # None: the admin
        self.categories = categories  # None: every category
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self._log = log
        self._buffer: list[list[Event]] = []
        self._waiting = 0
        self._ready = asyncio.Event()

    def visible(self, revision: Revision) -> list[Event]:
        """The parts of ``revision`` this watcher is shown. Cost: O(parts)."""
        return visible(revision, self.viewer, self.categories)

    def offer(self, revision: Revision) -> None:
        """Buffer what ``revision`` shows this watcher; overflow past ``limit``. Never waits."""
        if self.overflowed or self.closed:
            return
        parts = self.visible(revision)
        if not parts:
            return
        self._buffer.append(parts)
        self._waiting += len(parts)
        log = self._log
        if self._waiting > log.peak_waiting:
            log.peak_waiting = self._waiting
        if self._waiting > self.limit:
            self.overflowed = True
            self._buffer = []
            self._waiting = 0
            log.overflows += 1
            log.unsubscribe(self)
        self._ready.set()

    @property
    def waiting(self) -> int:
        """Parts buffered and not yet taken."""
        return self._waiting

    def take(self) -> list[list[Event]]:
        """Everything buffered, revision by revision; the buffer is empty after."""
        taken, self._buffer, self._waiting = self._buffer, [], 0
        return taken

    async def wait(self, timeout: float | None = None) -> None:
        """Until something is buffered, the watcher overflowed or closed, or ``timeout``."""
        if self._buffer or self.overflowed or self.closed:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            pass
        finally:
            self._ready.clear()

    def close(self) -> None:
        self.closed = True
        self._buffer = []
        self._waiting = 0
        self._log.unsubscribe(self)
        self._ready.set()


class EventLog:
    """Revision numbers, recent revisions and watchers; see the module docstring."""

    def __init__(
        self,
        *,
        keep: int = DEFAULT_KEEP,
        keep_weight: int | None = None,
        watcher_limit: int = DEFAULT_WATCHER_LIMIT,
    ) -> None:
        self.revision = 0  # the last one handed out
        self.published = 0  # the last one committed and offered
        self.evicted_through = 0  # revisions up to this one are no longer kept here
        self.keep = keep
        self.keep_weight = keep_weight
        self.watcher_limit = watcher_limit
        self.peak_waiting = 0  # the most parts one watcher ever had waiting
        self.overflows = 0  # watchers dropped for falling behind
        self._recent: deque[Revision] = deque()
        self._weight = 0
        self._watchers: set[Watcher] = set()

    def start_at(self, revision: int) -> None:
        """Continue after ``revision`` (the last one a store holds); nothing is kept yet."""
        self.revision = self.published = self.evicted_through = revision
        self._recent.clear()
        self._weight = 0

    def follow(self, revision: Revision) -> None:
        """A revision another registry committed (a standby following the leader): it
        must be the next one. Kept and offered like one of ours."""
        if revision.rev != self.revision + 1:
            raise ValueError(f"revision {revision.rev} does not follow {self.revision}")
        self.revision = revision.rev
        self.publish(revision)

    # -- the writing side ------------------------------------------------------------------

    def next(self, time: float, bodies: Sequence[EventBody]) -> Revision:
        """Number a change. Call inside its critical section, right before submitting it."""
        self.revision += 1
        return Revision(self.revision, time, bodies)

    def publish(self, revision: Revision) -> None:
        """A committed revision: keep it, offer it to every watcher. Cost: O(watchers)."""
        self.published = revision.rev
        recent = self._recent
        recent.append(revision)
        self._weight += revision.weight
        while len(recent) > self.keep or (
            self.keep_weight is not None and self._weight > self.keep_weight and len(recent) > 1
        ):
            gone = recent.popleft()
            self._weight -= gone.weight
            self.evicted_through = gone.rev
        for watcher in list(self._watchers):
            watcher.offer(revision)

    # -- the reading side ------------------------------------------------------------------

    def covers(self, after: int) -> bool:
        """Whether every published revision after ``after`` is kept here."""
        return after >= self.evicted_through

    def subscribe(
        self,
        after: int,
        viewer: str | None = None,
        categories: frozenset[str] | None = None,
        limit: int | None = None,
    ) -> tuple[list[list[Event]], Watcher]:
        """The kept revisions after ``after`` (as ``viewer`` sees them) and a watcher for
        every later one: together, each revision after ``after`` exactly once. Needs
        ``covers(after)``. Cost: O(revisions after ``after``)."""
        assert self.covers(after), (after, self.evicted_through)
        watcher = Watcher(self, viewer, categories, self.watcher_limit if limit is None else limit)
        backlog: list[list[Event]] = []
        for revision in reversed(self._recent):
            if revision.rev <= after:
                break
            parts = watcher.visible(revision)
            if parts:
                backlog.append(parts)
        backlog.reverse()
        self._watchers.add(watcher)
        return backlog, watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def waiting(self) -> int:
        """Parts buffered over all watchers (what slow readers cost now)."""
        return sum(w.waiting for w in self._watchers)
