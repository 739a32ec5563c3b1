"""Revisions and watchers in the core: parts of at most MAX_EVENT_HOLDS holds, the
revision of each change, visibility, overflow of a watcher that falls behind."""

from __future__ import annotations

import asyncio
import json

from pageholder.service.core.batch import batch_set, batch_unset
from pageholder.service.core.events import (
    MAX_EVENT_HOLDS,
    Encoded,
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
