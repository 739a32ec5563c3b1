"""The revision counter, the recent revisions, and the watchers they are handed to.

``EventLog`` numbers every change (``next``: inside the critical section that made it,
so revisions follow the journal's order), and once the change is committed
(``publish``: from the commit's future, or at once without a journal) keeps it among
the recent revisions and offers it to every ``Watcher``.

What a revision costs per watcher is nothing, since every subscriber would pay it for
every revision: the revision is filtered once per visibility class (who looks, at
which categories: the admins' class is shown the revision's own list of parts) and
appended once to that class's *tape*; a watcher is a position on its class's tape.
Watchers are not woken one by one: one *ring*, at most every ``flush_interval``
seconds once something was published, serves every watcher for everything that piled
up meanwhile, however many revisions that was; what a class's watchers took at one ring
is framed once for all of them (``shared_chunk``). A watcher with a ``deliver`` hook
(the stream's own write, which does not wait while its reader keeps up) is served by
the ring itself, while its task sleeps: its task wakes only when a write would have to
wait (``busy``), or the watcher overflowed or closed. So a ring costs each subscriber a
call and a write, not a wake-up of its task and the climb through its stream's
frames. A watcher without one waits on the *bell*, which the ring sets.

What is left of a ring is its writes, a system call each: their CPU time (kernel time
included, framing not) is counted in ``fanout_cpu``. At high rates it is mostly per
byte (every subscriber is sent every event), which no spacing of the rings saves.

Nothing here awaits on the publishing side: a watcher is a bounded buffer. One that
falls more than ``limit`` parts behind is marked *overflowed* and dropped from the log
(found by one comparison per revision per class: no watcher of the class has taken
fewer than ``low`` parts); its stream then says ``overflow`` and ends, and the client
resumes from the last revision it got. A tape drops what all its watchers took every
so often, so a slow reader costs the registry at most about twice ``limit``
references, and never a wait.

Recent revisions are kept (``keep`` revisions, and at most ``keep_weight`` parts plus
holds when a store holds the rest) so that a watcher that resumes from a recent
revision is served from memory; ``evicted_through`` is the last revision no longer
here. Without a store this is the whole history the registry has.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

from pageholder.service.core.events import Event, EventBody, Revision

#: Revisions kept in memory by default (the retention of a registry without a store).
DEFAULT_KEEP: Final = 100_000
#: Parts one watcher may have waiting before it overflows.
DEFAULT_WATCHER_LIMIT: Final = 4096


#: A revision as memory keeps it: ``(rev, time, bodies, weight)``, the bodies as the
#: store keeps them (``Revision.to_json``).
Kept: TypeAlias = tuple[int, float, str, int]


def keep(revision: Revision) -> Kept:
    """``revision`` as memory keeps it: a tuple of a string and numbers, which the
    collector untracks the first time it looks (a ``Revision``, its ``EventBody``
    items and their ``EventType`` members it never does, and nested tuples only one
    level per pass). The text is the one the store wrote, made once. Cost: O(1) after
    the store, O(holds) without one."""
    return (revision.rev, revision.time, revision.to_json(), revision.weight)


def thaw(kept: Kept) -> Revision:
    """The revision ``keep`` made ``kept`` of. Cost: O(holds)."""
    rev, time, text, _ = kept
    return Revision.from_json(rev, time, text)


#: Writes a ring's chunk (the framed revisions, the last one's number) to a watcher's
#: reader: True once written, False when the write has to wait (or failed): the
#: watcher's task then finishes it. Must not raise.
Deliver: TypeAlias = Callable[[bytes, int], bool]
#: Frames revisions (each the list of its parts) as one chunk for a reader.
Frame: TypeAlias = Callable[[list[list[Event]]], bytes]


#: A visibility class: who looks (None: the admin) and at which categories (None: all).
#: Every watcher of one class is shown the same parts of a revision.
ShownTo = tuple[str | None, frozenset[str] | None]


def visible(
    revision: Revision, viewer: str | None, categories: frozenset[str] | None
) -> list[Event]:
    """The parts of ``revision`` that ``viewer`` (None: the admin) is shown, of
    ``categories`` (None: all): new ``Event`` objects (see ``shown``). Cost: O(parts)."""
    return shown(revision.parts(), viewer, categories)


def shown(
    parts: list[Event], viewer: str | None, categories: frozenset[str] | None
) -> list[Event]:
    """Of a revision's ``parts``, those ``viewer`` (None: the admin) is shown, of
    ``categories`` (None: all). The admin's view of every category is ``parts`` itself,
    shared (do not change it). Cost: O(parts)."""
    if viewer is None and categories is None:
        return parts
    return [
        e
        for e in parts
        if (categories is None or e.type.category in categories) and e.visible_to(viewer)
    ]


class Tape:
    """The revisions of one visibility class as it is shown them, shared by its watchers.

    A revision is appended once per class, not once per watcher: a watcher is a
    position on its class's tape. Whether some watcher fell more than its limit behind
    is one comparison per revision (``low``: no watcher has taken fewer parts than
    that, ``low_limit``: the smallest limit); only when it says maybe are the watchers
    looked at (``EventLog._survey``), which also drops what every watcher took."""

    __slots__ = ("watchers", "revisions", "base", "parts", "low", "low_limit", "trim_at", "chunk")

    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()
        self.revisions: list[list[Event]] = []
        self.base = 0  # the tape's index of revisions[0] (what came before is dropped)
        self.parts = 0  # parts ever appended
        self.low = 0  # every watcher has taken at least this many parts
        self.low_limit = math.inf  # the smallest limit of its watchers
        self.trim_at = TRIM_AT  # survey (and drop what all took) at this many revisions
        #: the last chunk made from a take: (first, last, count, bytes); ``shared_chunk``
        self.chunk: tuple[list[Event], list[Event], int, bytes] | None = None

    @property
    def end(self) -> int:
        """The tape's index after its last revision."""
        return self.base + len(self.revisions)

    def cached(self, taken: list[list[Event]]) -> bytes | None:
        """The chunk last made from ``taken`` (not empty), if it was the same revisions.
        Watchers of a class hold the same list objects (a revision's parts are filtered
        once per class) in one order, so the same first and last list and the same
        length are the same revisions."""
        entry = self.chunk
        if (
            entry is not None
            and entry[0] is taken[0]
            and entry[1] is taken[-1]
            and entry[2] == len(taken)
        ):
            return entry[3]
        return None

    def keep(self, taken: list[list[Event]], chunk: bytes) -> bytes:
        """Remember ``chunk`` as made from ``taken``, for ``cached``; returns it."""
        self.chunk = (taken[0], taken[-1], len(taken), chunk)
        return chunk


#: Revisions a tape keeps at least before it drops what every watcher took.
TRIM_AT: Final = 64


def _unframed(taken: list[list[Event]]) -> bytes:
    raise AssertionError("a watcher is framed for only once attached")


class Watcher:
    """One subscriber: its position on its class's tape (the visible parts of each
    revision, in revision order, that it has not taken yet)."""

    __slots__ = (
        "viewer",
        "categories",
        "limit",
        "overflowed",
        "closed",
        "_log",
        "_tape",
        "_next",
        "_taken_parts",
        "_heard",
        "deliver",
        "frame",
        "busy",
        "_alarm",
    )

    def __init__(
        self,
        log: EventLog,
        tape: Tape,
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
        self._tape = tape
        self._next = tape.end  # the tape's index of the first revision not taken
        self._taken_parts = tape.parts  # the tape's parts when this one last took
        self._heard = log.rings  # the last ring this watcher's buffer was taken after
        #: the ring's write to this watcher's reader, while its task sleeps in ``wait``,
        #: of what ``frame`` made (``attach``)
        self.deliver: Deliver | None = None
        self.frame: Frame = _unframed
        #: a write by the ring had to wait: the watcher's task finishes it
        self.busy = False
        #: what the task sleeps on while the ring delivers (``deliver`` mode)
        self._alarm: asyncio.Future[None] | None = None

    def attach(self, deliver: Deliver, frame: Frame) -> None:
        """From now on the rings write to this watcher's reader while it sleeps in
        ``wait``: ``frame`` makes the chunk of what it took (shared by its class, so the
        same function for all of it), ``deliver`` writes it."""
        self.deliver, self.frame = deliver, frame

    @property
    def shown_to(self) -> ShownTo:
        return (self.viewer, self.categories)

    def visible(self, revision: Revision) -> list[Event]:
        """The parts of ``revision`` this watcher is shown. Cost: O(parts)."""
        return visible(revision, self.viewer, self.categories)

    @property
    def waiting(self) -> int:
        """Parts buffered and not yet taken."""
        if self.overflowed or self.closed:
            return 0
        return self._tape.parts - self._taken_parts

    def _pending(self) -> bool:
        return not (self.overflowed or self.closed) and self._tape.end > self._next

    def take(self) -> list[list[Event]]:
        """Everything buffered, revision by revision; the buffer is empty after."""
        self._heard = self._log.rings
        if self.overflowed or self.closed:
            return []
        tape = self._tape
        waiting = tape.parts - self._taken_parts
        if waiting > self._log.peak_waiting:
            self._log.peak_waiting = waiting
        taken = tape.revisions[self._next - tape.base :]
        self._next, self._taken_parts = tape.end, tape.parts
        return taken

    def _overflow(self) -> None:
        self.overflowed = True
        self._log.overflows += 1
        self._log.unsubscribe(self)
        self._wake()

    def _wake(self) -> None:
        alarm = self._alarm
        if alarm is not None and not alarm.done():
            alarm.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        """Without ``deliver``: until the log's next ring finds something buffered (or
        at once if one rang since the last ``take``), the watcher overflowed or closed,
        or ``timeout``. Woken with every other watcher by one ring, never more often
        than the log's ``flush_interval``: what piles up meanwhile is taken as one.

        With ``deliver``: the rings deliver what is buffered while this sleeps; it
        returns when a delivery has to wait (``busy``: the caller finishes it and clears
        ``busy``), the watcher overflowed or closed, or ``timeout``. Nothing is
        delivered while the caller is awake, so its own writes and the ring's never
        overlap."""
        if timeout is None:
            await self._sleep()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._sleep()
        except TimeoutError:
            pass

    async def _sleep(self) -> None:
        if self.deliver is None:
            await self._until_rung()
            return
        if self.overflowed or self.closed or self.busy:
            return
        log = self._log
        alarm = self._alarm = asyncio.get_running_loop().create_future()
        log.armed += 1
        if self._pending():  # buffered while the task was awake: the next ring sends it
            log.ring_soon()
        try:
            await alarm
        finally:
            self._alarm = None
            log.armed -= 1

    async def _until_rung(self) -> None:
        log = self._log
        while not (self.overflowed or self.closed):
            pending = self._pending()
            if pending and log.rings != self._heard:
                return
            bell = log.bell()
            if pending:  # offered while no one listened: ring for it
                log.ring_soon()
            await bell.wait()
            if not self._pending():  # nothing for this one in that ring
                self._heard = log.rings

    def close(self) -> None:
        """Leave the log (by the stream that owns the watcher)."""
        if not (self.closed or self.overflowed):
            self._log.unsubscribe(self)
        self.closed = True
        self._wake()


class EventLog:
    """Revision numbers, recent revisions and watchers; see the module docstring."""

    def __init__(
        self,
        *,
        keep: int = DEFAULT_KEEP,
        keep_weight: int | None = None,
        watcher_limit: int = DEFAULT_WATCHER_LIMIT,
        flush_interval: float = 0.0,
    ) -> None:
        self.revision = 0  # the last one handed out
        self.published = 0  # the last one committed and offered
        self.evicted_through = 0  # revisions up to this one are no longer kept here
        self.keep = keep
        self.keep_weight = keep_weight
        self.watcher_limit = watcher_limit
        #: the most parts one watcher had waiting, as seen when it took them or was surveyed
        self.peak_waiting = 0
        self.overflows = 0  # watchers dropped for falling behind
        #: a ring wakes the watchers at most this often (seconds)
        self.flush_interval = flush_interval
        #: CPU seconds the rings' deliveries took, without (and in) making the frames
        self.fanout_cpu = 0.0
        self.framing_cpu = 0.0
        self.waited = 0  # the rings' writes that had to wait (left to the stream's task)
        self.rings = 0  # rings so far
        self.armed = 0  # watchers asleep while the rings deliver to them
        #: the recent revisions, untracked by the collector (``keep``): thousands churn
        #: through memory a second on a busy registry, and as objects each would be
        #: visited by every full collection, which their churn would make frequent
        self._recent: deque[Kept] = deque()
        self._weight = 0
        #: the watchers by visibility class: a revision is filtered once per class
        self._classes: dict[ShownTo, Tape] = {}
        self._bell: asyncio.Event | None = None
        self._ringing: asyncio.Handle | None = None
        self._last_ring = -math.inf

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
        """A committed revision: keep it, offer it to every watcher, ring soon. Cost:
        O(parts) per visibility class, O(1) per watcher."""
        self.published = revision.rev
        recent = self._recent
        kept = keep(revision)
        recent.append(kept)
        self._weight += kept[3]
        while len(recent) > self.keep or (
            self.keep_weight is not None and self._weight > self.keep_weight and len(recent) > 1
        ):
            gone = recent.popleft()
            self._weight -= gone[3]
            self.evicted_through = gone[0]
        every = revision.parts() if self._classes else []  # made once, shared by the classes
        for (viewer, categories), tape in list(self._classes.items()):  # a survey may end one
            parts = shown(every, viewer, categories)
            if parts:
                tape.revisions.append(parts)
                tape.parts += len(parts)
                if tape.parts - tape.low > tape.low_limit or len(tape.revisions) >= tape.trim_at:
                    self._survey(tape)
        if self._bell is not None or self.armed:
            self.ring_soon()

    def _survey(self, tape: Tape) -> None:
        """Overflow the watchers of ``tape`` past their limit, note the peak, drop the
        revisions every watcher took, and reset the tape's bounds. Cost: O(watchers of
        the class), once per ``trim_at`` revisions or when one may have overflowed."""
        for watcher in list(tape.watchers):
            waiting = tape.parts - watcher._taken_parts
            if waiting > self.peak_waiting:
                self.peak_waiting = waiting
            if waiting > watcher.limit:
                watcher._overflow()
        watchers = tape.watchers
        if not watchers:
            return
        first = min(w._next for w in watchers)
        del tape.revisions[: first - tape.base]
        tape.base = first
        tape.low = min(w._taken_parts for w in watchers)
        tape.low_limit = min(w.limit for w in watchers)
        tape.trim_at = len(tape.revisions) + max(TRIM_AT, len(tape.revisions))

    # -- waking the watchers ---------------------------------------------------------------

    def bell(self) -> asyncio.Event:
        """What the watchers wait on: set (and replaced) by the next ring."""
        if self._bell is None:
            self._bell = asyncio.Event()
        return self._bell

    def ring_soon(self) -> None:
        """Ring once ``flush_interval`` has passed since the last ring (at the next turn
        of the loop if it has): one ring for every revision published until then."""
        if self._ringing is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_ring + self.flush_interval - loop.time()
        if delay > 0:
            self._ringing = loop.call_later(delay, self._ring)
        else:
            self._ringing = loop.call_soon(self._ring)

    def _ring(self) -> None:
        self._ringing = None
        self._last_ring = asyncio.get_running_loop().time()
        self.rings += 1
        if self.armed:
            self._deliver()
        bell, self._bell = self._bell, None
        if bell is not None:
            bell.set()

    def _deliver(self) -> None:
        """Write what piled up to every sleeping watcher with a ``deliver`` hook (one
        chunk per class, ``shared_chunk``); a write that has to wait wakes its task.
        Counts the CPU time in ``fanout_cpu``, making the frames apart (``framing_cpu``:
        each event is framed once, for one subscriber or a thousand)."""
        began = time.thread_time()
        framing = 0.0
        for tape in list(self._classes.values()):  # a delivery may end a class
            end = tape.end
            for watcher in list(tape.watchers):
                if (
                    watcher.deliver is None
                    or watcher._alarm is None
                    or watcher._next >= end
                    or watcher.busy
                    or watcher.overflowed
                    or watcher.closed
                ):
                    continue
                taken = watcher.take()
                chunk = tape.cached(taken)
                if chunk is None:
                    framed = time.thread_time()
                    chunk = tape.keep(taken, watcher.frame(taken))
                    framing += time.thread_time() - framed
                if not watcher.deliver(chunk, taken[-1][0].rev):
                    self.waited += 1
                    watcher.busy = True
                    watcher._wake()
        cost = time.thread_time() - began - framing
        self.fanout_cpu += cost
        self.framing_cpu += framing

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
        key = (viewer, categories)
        tape = self._classes.get(key)
        if tape is None:
            tape = self._classes[key] = Tape()
        watcher = Watcher(
            self, tape, viewer, categories, self.watcher_limit if limit is None else limit
        )
        backlog: list[list[Event]] = []
        for kept in reversed(self._recent):
            if kept[0] <= after:
                break
            parts = watcher.visible(thaw(kept))
            if parts:
                backlog.append(parts)
        backlog.reverse()
        tape.watchers.add(watcher)
        tape.low_limit = min(tape.low_limit, watcher.limit)
        return backlog, watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        key = watcher.shown_to
        tape = self._classes.get(key)
        if tape is not None and watcher in tape.watchers:
            tape.watchers.discard(watcher)
            if not tape.watchers:
                del self._classes[key]

    def shared_chunk(self, key: ShownTo, taken: list[list[Event]], make: Frame) -> bytes:
        """``make(taken)`` (not empty, from a watcher of class ``key``), made once per
        class per ring: every watcher of a class that took the same revisions gets the
        same bytes object (``Tape.cached``). Cost: O(1) when shared, ``make`` otherwise."""
        tape = self._classes.get(key)
        if tape is None:
            return make(taken)
        chunk = tape.cached(taken)
        return tape.keep(taken, make(taken)) if chunk is None else chunk

    @property
    def watchers(self) -> int:
        return sum(len(tape.watchers) for tape in self._classes.values())

    def waiting(self) -> int:
        """Parts buffered over all watchers (what slow readers cost now)."""
        return sum(w.waiting for tape in self._classes.values() for w in tape.watchers)
