"""One chunk per visibility class per ring: subscribers of a class share its bytes."""

from __future__ import annotations

from pageholder.service.api.routes import events as routes
from pageholder.service.core.events import Event, EventBody, EventType
from pageholder.service.core.watchers import EventLog


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
    assert log.watchers == 0 and not log._chunks  # the class's chunk goes with it
