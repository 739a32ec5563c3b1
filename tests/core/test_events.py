"""Revisions and watchers in the core: parts of at most MAX_EVENT_HOLDS holds, the
revision of each change, visibility, overflow of a watcher that falls behind."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pageholder.service.core import events, watchers
from pageholder.service.core.batch import batch_set, batch_unset
from pageholder.service.core.events import (
    MAX_EVENT_HOLDS,
    Encoded,
    Event,
    EventBody,
    EventType,
    Revision,
    block_event,
)
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry
from pageholder.service.core.watchers import EventLog

NORMAL = 1 << 20


async def never_called(
    holder: Holder, pages: object, *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    raise AssertionError("no release expected")


def test_a_big_body_is_cut_in_parts_and_json_round_trips() -> None:
    holds = tuple((NORMAL + i, 0) for i in range(MAX_EVENT_HOLDS * 2 + 1))
    revision = Revision(7, 1.5, [EventBody(EventType.HOLD_CREATED, "nic0", holds)])
    parts = revision.parts()
    assert [(p.part, p.parts, len(p.holds)) for p in parts] == [
        (1, 3, MAX_EVENT_HOLDS),
        (2, 3, MAX_EVENT_HOLDS),
        (3, 3, 1),
    ]
    assert [p.last for p in parts] == [False, False, True]
    back = Revision.from_json(7, 1.5, revision.to_json())
    assert [b.holds for b in back.bodies] == [holds]


async def test_each_change_is_one_revision_and_unchanged_is_none() -> None:
    registry = Registry(MemoryLayout.default(), never_called)
    log = registry.events
    _, watcher = log.subscribe(0)
    await registry.add_holder("nic0")
    await registry.set_hold(NORMAL, "nic0")
    await registry.set_hold(NORMAL, "nic0")  # unchanged: no revision
    await batch_set(registry, "nic0", [(NORMAL + 1 + i, 0) for i in range(10)])
    await batch_unset(registry, [(NORMAL + 1 + i, 0) for i in range(10)])
    await registry.unset_hold(NORMAL)
    got = [(parts[0].rev, parts[0].type.value, len(parts[0].holds)) for parts in watcher.take()]
    assert got == [
        (1, "holder.created", 0),
        (2, "hold.created", 1),
        (3, "hold.created", 10),
        (4, "hold.unset", 10),
        (5, "hold.unset", 1),
    ]
    assert log.revision == log.published == 5


async def test_a_watcher_that_falls_behind_overflows_and_is_dropped() -> None:
    log = EventLog(watcher_limit=3)
    _, slow = log.subscribe(0)
    _, fine = log.subscribe(0)
    for _ in range(5):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
        if log.revision <= 3:
            fine.take()
    assert slow.overflowed and slow.waiting == 0 and log.watchers == 1
    assert not fine.overflowed and [p[0].rev for p in fine.take()] == [4, 5]
    assert log.overflows == 1 and log.peak_waiting == 4
    async with asyncio.timeout(1):
        await slow.wait()  # an overflowed watcher does not wait


async def test_a_holder_sees_its_own_hold_events_and_every_block_event() -> None:
    log = EventLog()
    backlog, gpu = log.subscribe(0, viewer="gpu")
    assert backlog == []
    for body in (
        EventBody(EventType.HOLD_CREATED, "nic0", ((1, 0),)),
        EventBody(EventType.HOLD_CREATED, "gpu", ((2, 0),)),
        EventBody(EventType.HOLD_OVERWRITTEN, "nic0", ((2, 0),), previous=("gpu",)),
        EventBody(EventType.HOLDER_UPDATED, "nic0"),
        EventBody(EventType.BLOCK_OFFLINE, block=3, report={"block": 3}),
    ):
        log.publish(log.next(0.0, [body]))
    assert [p[0].rev for p in gpu.take()] == [2, 3, 5]
    # A late subscriber is served the kept revisions first, filtered by category.
    backlog, blocks = log.subscribe(1, categories=frozenset({"block"}))
    assert [p[0].rev for p in backlog] == [5]
    assert PageRef(1, 0) == (1, 0)  # holds are (pfn, order) pairs


async def test_a_revision_is_filtered_once_per_visibility_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = EventLog()
    admins = [log.subscribe(0)[1] for _ in range(50)]
    gpus = [log.subscribe(0, viewer="gpu")[1] for _ in range(10)]
    blocks = [log.subscribe(0, categories=frozenset({"block"}))[1] for _ in range(10)]
    calls: list[tuple[str | None, frozenset[str] | None]] = []
    original = watchers.shown

    def counted(
        parts: list[Event], viewer: str | None, categories: frozenset[str] | None
    ) -> list[Event]:
        calls.append((viewer, categories))
        return original(parts, viewer, categories)

    monkeypatch.setattr(watchers, "shown", counted)
    log.publish(log.next(0.0, [EventBody(EventType.HOLD_CREATED, "gpu", [(2, 0)])]))
    assert sorted(calls, key=repr) == sorted(
        [(None, None), ("gpu", None), (None, frozenset({"block"}))], key=repr
    )
    # every admin holds the revision's own list of parts: shared, not copied
    (shared,) = admins[0].take()
    assert all(w.take() == [shared] and w.waiting == 0 for w in admins[1:])
    assert all(len(w.take()) == 1 for w in gpus) and all(w.take() == [] for w in blocks)


async def test_one_ring_wakes_every_watcher_for_everything_published_before_it() -> None:
    log = EventLog(flush_interval=60.0)  # after the first ring, the next one is far off
    watching = [log.subscribe(0)[1] for _ in range(3)]
    woken = [asyncio.create_task(w.wait()) for w in watching]
    log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
    async with asyncio.timeout(5):
        await asyncio.gather(*woken)  # the first ring comes at the loop's next turn
    assert log.rings == 1 and all(len(w.take()) == 1 for w in watching)
    # more revisions now wait for the next ring, a minute away: so does the watcher
    for _ in range(5):
        log.publish(log.next(0.0, [EventBody(EventType.BLOCK_ONLINE, block=1)]))
    waiting = asyncio.create_task(watching[0].wait())
    for _ in range(3):
        await asyncio.sleep(0)  # turns of the loop: a ring due now would have come
    assert not waiting.done() and log.rings == 1 and watching[0].waiting == 5
    waiting.cancel()


def test_an_encoded_report_is_spliced_in_and_weighs_its_entries() -> None:
    report = {"block": 7, "state": "online", "failures": [{"pfn": 1}, {"pfn": 2}]}
    encoded = Encoded(json.dumps(report, separators=(",", ":")), weight=2)
    body = block_event(EventType.BLOCK_OFFLINE_FAILED, 7, encoded)
    revision = Revision(3, 1.5, [body])
    (part,) = revision.parts()
    assert json.loads(part.data)["report"] == report == part.as_dict()["report"]
    again = Revision.from_json(3, 1.5, revision.to_json())
    assert again.bodies[0].report == report
    plain = Revision(3, 1.5, [block_event(EventType.BLOCK_OFFLINE_FAILED, 7, report)])
    assert json.loads(plain.to_json()) == json.loads(revision.to_json())
    assert revision.weight == plain.weight == 3  # the body and its two failures


def test_the_stored_json_is_the_one_shot_encoding_written_in_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store's writer thread encodes a revision: a 65,536-hold body is encoded
    ``MAX_EVENT_HOLDS`` holds per C call, so the loop's thread can take the GIL back in
    between; the text is what one ``json.dumps`` of it would be."""
    holds = tuple((NORMAL + i, i % 3) for i in range(16 * MAX_EVENT_HOLDS + 5))
    report = {"block": 3, "failures": [{"holder": 'a"b', "detail": "é\n"}]}
    bodies = [
        EventBody(EventType.HOLD_OVERWRITTEN, "nic0", holds, previous=("gpu0", "b")),
        EventBody(EventType.BLOCK_OFFLINE_FAILED, None, (), 7, report),
        EventBody(EventType.HOLD_UNSET, "gpu0", ((1, 0),)),
    ]
    revision = Revision(9, 2.5, bodies)
    one_shot = json.dumps(
        [[b.type.value, b.holder, b.holds, b.block, b.report, b.previous] for b in bodies],
        separators=(",", ":"),
    )
    calls: list[object] = []
    dumps = events._dumps

    def spied(value: object) -> str:
        calls.append(value)
        return dumps(value)

    monkeypatch.setattr(events, "_dumps", spied)
    assert revision.to_json() == one_shot
    assert max(len(v) for v in calls if isinstance(v, list)) == MAX_EVENT_HOLDS


_texts = st.text(max_size=12)  # any code point: quotes, control characters, non-ASCII
_reports = st.none() | st.dictionaries(
    _texts, st.none() | st.integers() | _texts | st.lists(st.integers(), max_size=3), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(EventType)),
    holder=st.none() | _texts,
    holds=st.lists(st.tuples(st.integers(0, 1 << 52), st.integers(0, 18)), max_size=5),
    block=st.none() | st.integers(0, 1 << 40),
    report=_reports,
    encode=st.booleans(),
    previous=st.lists(_texts, max_size=3),
    rev=st.integers(1, 1 << 40),
    time=st.floats(0, 4e9),
)
def test_an_events_data_is_json_dumps_of_its_dict_byte_for_byte(
    kind: EventType,
    holder: str | None,
    holds: list[tuple[int, int]],
    block: int | None,
    report: dict[str, object] | None,
    encode: bool,
    previous: list[str],
    rev: int,
    time: float,
) -> None:
    """``Event.data`` is written out by hand (it was a dict through ``json.dumps``);
    what it writes must not change by a byte, whatever a holder is named."""
    kept: dict[str, object] | Encoded | None = report
    if encode and report is not None:  # an encoded report is spliced in as it is
        kept = Encoded(json.dumps(report, separators=(",", ":")), len(report))
    body = EventBody(kind, holder, tuple(holds), block, kept, tuple(previous))
    (part,) = Revision(rev, time, [body]).parts()
    assert part.data == json.dumps(part.as_dict(), separators=(",", ":"))
