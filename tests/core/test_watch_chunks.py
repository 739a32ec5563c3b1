"""Per class, not per subscriber: a revision is appended once to the class's tape, and
what its subscribers take at one ring is framed once, as one bytes object."""

from __future__ import annotations

import asyncio
import gc

import pytest
from sse_starlette import ServerSentEvent

from pageholder.service.api.routes import events as routes
from pageholder.service.core.events import (
    Event,
    EventBody,
    EventType,
    Revision,
    block_event,
    hold_events,
)
from pageholder.service.core.watchers import TRIM_AT, EventLog, Tape


def test_a_hundred_admins_get_the_same_bytes_made_once() -> None:
    log = EventLog()
    admins = [log.subscribe(0)[1] for _ in range(100)]
    gpus = [log.subscribe(0, viewer="gpu")[1] for _ in range(3)]
    made: list[int] = []

    def counted(taken: list[list[Event]]) -> bytes:
        made.append(len(taken))
        return routes.frames(taken)

    for ring in range(3):
        for pfn in range(5):
            body = EventBody(EventType.HOLD_CREATED, "nic0" if pfn % 2 else "gpu", [(pfn, 0)])
            log.publish(log.next(0.0, [body]))
        takes = [w.take() for w in admins]
        chunks = [
            log.shared_chunk(w.shown_to, t, counted) for w, t in zip(admins, takes, strict=True)
        ]
        assert all(c is chunks[0] for c in chunks)  # one bytes object, not 100 equal ones
        assert chunks[0] == routes.frames(takes[-1]) and chunks[0].count(b"id: ") == 5
        mine = [log.shared_chunk(w.shown_to, w.take(), counted) for w in gpus]
        assert all(c is mine[0] for c in mine) and mine[0] != chunks[0]
        assert made == [5, 3] * (ring + 1)  # one join per class per ring


def test_a_watcher_that_took_other_revisions_gets_its_own_chunk() -> None:
    log = EventLog()
    fast, slow = log.subscribe(0)[1], log.subscribe(0)[1]
    log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
    first = log.shared_chunk(fast.shown_to, fast.take(), routes.frames)
    log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=2)]))
    both = log.shared_chunk(slow.shown_to, slow.take(), routes.frames)
    assert both == first + log.shared_chunk(fast.shown_to, fast.take(), routes.frames)
    fast.close()
    slow.close()
    assert log.watchers == 0 and not log._classes  # the class (its chunk) goes with it


def test_a_revision_is_appended_once_per_class_not_once_per_watcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = EventLog(watcher_limit=1000)
    admins = [log.subscribe(0)[1] for _ in range(100)]
    surveys: list[int] = []
    survey = EventLog._survey

    def counted(self: EventLog, tape: Tape) -> None:
        surveys.append(len(tape.watchers))
        survey(self, tape)

    monkeypatch.setattr(EventLog, "_survey", counted)
    for _ in range(TRIM_AT - 1):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
    # no watcher was looked at: each revision was one append to the admins' tape
    assert surveys == [] and all(w.waiting == TRIM_AT - 1 for w in admins)
    (tape,) = log._classes.values()
    assert len(tape.revisions) == TRIM_AT - 1 and tape.watchers == set(admins)
    taken = [w.take() for w in admins]
    assert all(t == taken[0] and len(t) == TRIM_AT - 1 for t in taken)
    # every TRIM_AT revisions or so, what every watcher took is dropped
    for _ in range(10 * TRIM_AT):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
        for w in admins:
            w.take()
    assert len(surveys) <= 11 and len(tape.revisions) <= TRIM_AT
    assert log.peak_waiting == TRIM_AT - 1 and log.overflows == 0


def test_a_slow_watcher_keeps_at_most_about_twice_its_limit_on_the_tape() -> None:
    log = EventLog(watcher_limit=200)
    _, slow = log.subscribe(0)
    _, fast = log.subscribe(0)
    kept = 0
    for i in range(1000):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
        fast.take()
        if i % 150 == 0:
            slow.take()
        (tape,) = log._classes.values()
        kept = max(kept, len(tape.revisions))
    assert not slow.overflowed and kept <= 2 * 200 and log.peak_waiting == 150
    for _ in range(201):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
        fast.take()
    assert slow.overflowed and not fast.overflowed and log.watchers == 1


@pytest.mark.parametrize("with_id", [True, False])
def test_a_frame_is_what_sse_starlette_encodes(with_id: bool) -> None:
    bodies = [
        EventBody(EventType.HOLD_CREATED, "nic0", [(1, 0), (512, 9)]),
        EventBody(EventType.HOLD_OVERWRITTEN, "nïc\u2028", [(2, 0)], previous=("gpu",)),
        block_event(EventType.BLOCK_OFFLINE_FAILED, 7, {"block": 7, "why": "a\nb\r\nc"}),
    ]
    for event in Revision(11, 1.5, bodies).parts():
        expected = ServerSentEvent(
            event.data, event=event.type.value, id="11" if with_id else None, sep="\n"
        ).encode()
        assert routes.frame(event, with_id) == expected


def _hold(log: EventLog, pfn: int) -> None:
    log.publish(log.next(0.0, [EventBody(EventType.HOLD_CREATED, "nic0", ((pfn, 0),))]))


async def test_the_ring_writes_to_sleeping_watchers_without_waking_them() -> None:
    log = EventLog()
    written: list[tuple[int, bytes, int]] = []
    made: list[int] = []

    def frame(taken: list[list[Event]]) -> bytes:
        made.append(len(taken))
        return routes.frames(taken)

    watchers = [log.subscribe(0)[1] for _ in range(20)]
    for i, watcher in enumerate(watchers):
        watcher.attach(lambda chunk, last, i=i: written.append((i, chunk, last)) is None, frame)
    sleeping = [asyncio.create_task(w.wait()) for w in watchers]
    await asyncio.sleep(0)  # every task asleep (armed)
    assert log.armed == 20
    for pfn in range(3):
        _hold(log, pfn)
    for _ in range(3):
        await asyncio.sleep(0)  # the ring runs
    assert sorted(i for i, _, _ in written) == list(range(20))
    assert all(chunk is written[0][1] and last == 3 for _, chunk, last in written)
    assert written[0][1].count(b"id: ") == 3 and made == [3]  # framed once for all
    assert not any(task.done() for task in sleeping)  # nobody's task was woken
    assert all(w.waiting == 0 for w in watchers) and log.fanout_cpu > 0
    for task in sleeping:
        task.cancel()
    await asyncio.gather(*sleeping, return_exceptions=True)
    assert log.armed == 0


async def test_a_write_that_has_to_wait_wakes_its_task_and_the_ring_skips_it() -> None:
    log = EventLog()
    calls: list[int] = []
    waits = [True]
    watcher = log.subscribe(0)[1]
    watcher.attach(lambda chunk, last: calls.append(last) is None and not waits[0], routes.frames)
    sleeping = asyncio.create_task(watcher.wait())
    await asyncio.sleep(0)
    _hold(log, 1)
    await asyncio.wait_for(sleeping, 5)  # woken: its write had to wait
    assert watcher.busy and calls == [1]
    _hold(log, 2)
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls == [1]  # busy: the ring leaves it to its task
    assert [[e.rev for e in parts] for parts in watcher.take()] == [[2]]
    watcher.busy = False  # the task finished the write
    waits[0] = False
    sleeping = asyncio.create_task(watcher.wait())
    _hold(log, 3)
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls == [1, 3] and not sleeping.done()
    watcher.close()  # closing wakes it
    await asyncio.wait_for(sleeping, 5)


async def test_an_overflow_wakes_a_sleeping_watcher() -> None:
    log = EventLog(watcher_limit=2)
    watcher = log.subscribe(0)[1]
    watcher.attach(lambda chunk, last: False, routes.frames)
    watcher.busy = True  # a write of its is waiting: the ring leaves it alone
    sleeping = asyncio.create_task(watcher.wait())
    assert (await asyncio.wait_for(sleeping, 5)) is None  # busy: wait returns at once
    watcher.busy = False
    watcher.deliver = None  # a stalled reader: nothing is written to it
    sleeping = asyncio.create_task(watcher.wait())
    for pfn in range(4):
        _hold(log, pfn)
    await asyncio.wait_for(sleeping, 5)
    assert watcher.overflowed


def test_kept_revisions_are_untracked_by_the_collector() -> None:
    """Collections come to visit none of the revisions memory keeps (see
    ``watchers.keep``): as objects, 10,000 of them churned through the oldest
    generation, and made the collector walk them every fraction of a second."""
    log = EventLog()
    log.subscribe(0)  # a subscriber: its parts are made, and must not be kept
    for pfn in range(100):
        log.publish(
            log.next(1.5, hold_events(EventType.HOLD_CREATED, [("nic0", pfn, 0), ("gpu", pfn, 0)]))
        )
    log.publish(log.next(2.0, [block_event(EventType.BLOCK_ONLINE, 3)]))
    gc.collect()
    assert len(log._recent) == 101
    assert not any(gc.is_tracked(kept) for kept in log._recent)
    backlog, _ = log.subscribe(99)  # and the kept form gives the same events back
    assert [[e.data for e in parts] for parts in backlog] == [
        [
            e.data
            for e in Revision(
                100, 1.5, hold_events(EventType.HOLD_CREATED, [("nic0", 99, 0), ("gpu", 99, 0)])
            ).parts()
        ],
        [e.data for e in Revision(101, 2.0, [block_event(EventType.BLOCK_ONLINE, 3)]).parts()],
    ]
