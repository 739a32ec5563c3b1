"""What a watcher sees: every committed change as a *revision* of typed events.

Vocabulary:

    revision    one committed change (a set, an unset, a batch, an offline's settle...)
                and its number, ``rev``: it grows by one per change and is stored with
                the change in the same transaction (``storage.sqlite``)
    body        one thing that happened in a revision, without its number: a type, the
                holder, its holds, the block, the report (``EventBody``)
    part        what goes on the wire: a body carries at most ``MAX_EVENT_HOLDS`` holds,
                so a big one (a 65,536-entry batch) is cut into several parts; every
                part of a revision has the same ``rev`` and its own ``part``/``parts``
    category    the first word of a type (``hold``, ``holder``, ``block``): what the
                ``types`` filter of ``GET /v1/events`` selects

A body is built by the registry inside the critical section that made the change and
submitted with the change's journal ops (``Registry.submit``); ``Revision`` numbers it.
JSON is made once per part (``Event.data``) and shared by every subscriber.

A body's holds are a *tuple* of ``(pfn, order)`` tuples (``HoldRefs``), never a list:
the recent revisions stay in memory (``core.watchers``), and a tuple of ints, then a
tuple of such tuples, is untracked by the garbage collector the first time it looks at
them, whereas a list stays tracked and every full collection would visit each of its
items. A revision of 10^6 holds then costs a full collection nothing per hold (a
reclaim of 10^6 holds kept 1,000 such lists: ~20 ms more per full collection, each one
a stall of the event loop).

A big report (an offline's, with up to a failure per hold) travels encoded already
(``Encoded``): its owner encodes it in slices before submitting, and the store's row and
every part's data splice that text in. So it is never encoded in one step (on the loop
or, holding the GIL, on the store's writer thread) and the revisions kept in memory
hold one string instead of a dict per failure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

#: Holds in one event part (a revision with more is sent as several parts).
MAX_EVENT_HOLDS: Final = 4096


class EventType(StrEnum):
    HOLDER_CREATED = "holder.created"
    HOLDER_UPDATED = "holder.updated"
    HOLDER_DELETED = "holder.deleted"
    HOLDER_EXPIRED = "holder.expired"
    HOLDER_REVIVED = "holder.revived"
    HOLD_CREATED = "hold.created"
    HOLD_OVERWRITTEN = "hold.overwritten"
    HOLD_UNSET = "hold.unset"
    HOLD_RELEASED = "hold.released"
    HOLD_RECLAIMED = "hold.reclaimed"
    BLOCK_GOING_OFFLINE = "block.going_offline"
    BLOCK_OFFLINE = "block.offline"
    BLOCK_ONLINE = "block.online"
    BLOCK_OFFLINE_FAILED = "block.offline_failed"

    @property
    def category(self) -> str:
        return self.value.partition(".")[0]


#: The categories a ``types`` filter names.
CATEGORIES: Final = frozenset(t.category for t in EventType)

#: A hold as an event names it: ``(pfn, order)``.
HoldRef = tuple[int, int]
#: A body's holds: a tuple, so that the collector untracks them (see the docstring).
HoldRefs = tuple[HoldRef, ...]


class Encoded(NamedTuple):
    """A value encoded already (compact JSON), spliced in as it is; ``weight`` is what
    keeping it costs, counted like holds (a report: its failures and reclaimed holds)."""

    text: str
    weight: int


class EventBody(NamedTuple):
    """One thing a change did. ``previous``: the holders a ``hold.overwritten`` took
    pages from (they see the event too)."""

    type: EventType
    holder: str | None = None
    holds: HoldRefs = ()
    block: int | None = None
    report: dict[str, Any] | Encoded | None = None
    previous: tuple[str, ...] = ()

    @property
    def weight(self) -> int:
        """One for the body, one per hold and one per entry of its report."""
        report = self.report
        if isinstance(report, Encoded):
            entries = report.weight
        elif report is not None:
            entries = len(report.get("failures", ())) + len(report.get("reclaimed", ()))
        else:
            entries = 0
        return 1 + len(self.holds) + entries


def holder_event(kind: EventType, name: str, holds: HoldRefs = ()) -> EventBody:
    return EventBody(kind, name, holds)


class HoldsByHolder:
    """``hold_events``, one hold at a time: work that comes in slices (a batch) groups
    its holds as it goes, and its last step is O(holders), not O(holds)."""

    __slots__ = ("kind", "previous", "_by_holder")

    def __init__(self, kind: EventType, previous: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.previous = previous
        self._by_holder: dict[str, list[HoldRef]] = defaultdict(list)

    def add(self, holder: str, pfn: int, order: int) -> None:
        """Cost: O(1)."""
        self._by_holder[holder].append((pfn, order))

    def bodies(self) -> list[EventBody]:
        """One body per holder, holders in first-seen order. Cost: O(holders)."""
        kind, previous = self.kind, self.previous
        return [
            EventBody(kind, name, tuple(refs), previous=previous)
            for name, refs in self._by_holder.items()
        ]


def hold_events(
    kind: EventType, holds: Iterable[tuple[str, int, int]], previous: tuple[str, ...] = ()
) -> list[EventBody]:
    """One body per holder for ``(holder, pfn, order)`` triples, holders in first-seen
    order, each holder's holds in the given order. Cost: O(holds)."""
    grouped = HoldsByHolder(kind, previous)
    for name, pfn, order in holds:
        grouped.add(name, pfn, order)
    return grouped.bodies()


def block_event(
    kind: EventType, block: int, report: dict[str, Any] | Encoded | None = None
) -> EventBody:
    return EventBody(kind, block=block, report=report)


class Event:
    """One part of a revision, as it is sent: ``id`` (the rev) goes only on the last part."""

    __slots__ = ("rev", "time", "body", "holds", "part", "parts", "_data", "encoded")

    def __init__(
        self,
        rev: int,
        time: float,
        body: EventBody,
        holds: HoldRefs,
        part: int,
        parts: int,
    ) -> None:
        self.rev = rev
        self.time = time
        self.body = body
        self.holds = holds
        self.part = part
        self.parts = parts
        self._data: str | None = None
        #: the edge's wire forms of this part (say, with and without an SSE id), made
        #: once by whoever sends it and shared by every subscriber
        self.encoded: dict[object, bytes] = {}

    @property
    def type(self) -> EventType:
        return self.body.type

    @property
    def last(self) -> bool:
        """The revision's last part: the only one that carries the SSE ``id``."""
        return self.part == self.parts

    def visible_to(self, holder: str | None) -> bool:
        """Admin (None) sees everything; a holder its own holder and hold events (and
        overwrites of its holds) and every block event."""
        body = self.body
        return (
            holder is None
            or body.holder == holder
            or body.type.category == "block"
            or holder in body.previous
        )

    def as_dict(self) -> dict[str, Any]:
        report = self.body.report
        doc = self._fields()
        doc["report"] = json.loads(report.text) if isinstance(report, Encoded) else report
        return doc

    @property
    def data(self) -> str:
        """The JSON of ``as_dict()`` (compact, keys in its order), made once and shared
        by every subscriber. Written out directly rather than built as a dict for
        ``json.dumps``: every event is framed once when anyone watches, and the dict
        was most of that cost. Strings go through json's own (C) string encoder, a
        dict report through ``json.dumps``, an encoded one is spliced in; the result is
        ``json.dumps(self.as_dict(), separators=(",", ":"))`` byte for byte (a property
        test holds them equal)."""
        if self._data is None:
            body = self.body
            holder = "null" if body.holder is None else _string(body.holder)
            holds = ",".join([f'{{"pfn":{pfn},"order":{order}}}' for pfn, order in self.holds])
            block = "null" if body.block is None else int.__repr__(body.block)
            previous = ",".join([_string(name) for name in body.previous])
            report = body.report
            if report is None:
                encoded = "null"
            elif isinstance(report, Encoded):
                encoded = report.text
            else:
                encoded = _dumps(report)
            self._data = (
                f'{{"rev":{self.rev},"type":{_string(body.type.value)},'
                f'"time":"{_iso(self.time)}","part":{self.part},"parts":{self.parts},'
                f'"holder":{holder},"holds":[{holds}],"block":{block},'
                f'"previous":[{previous}],"report":{encoded}}}'
            )
        return self._data

    def _fields(self) -> dict[str, Any]:
        """Everything but the report."""
        body = self.body
        return {
            "rev": self.rev,
            "type": body.type.value,
            "time": _iso(self.time),
            "part": self.part,
            "parts": self.parts,
            "holder": body.holder,
            "holds": [{"pfn": pfn, "order": order} for pfn, order in self.holds],
            "block": body.block,
            "previous": list(body.previous),
        }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


#: A string as ``json.dumps`` writes it (ASCII, quoted): json's own encoder.
_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _iso(time: float) -> str:
    return datetime.fromtimestamp(time, UTC).isoformat()


def _body_json(body: EventBody) -> str:
    """``_dumps([type, holder, holds, block, report, previous])``, the holds in chunks
    and an encoded report spliced in."""
    holds, report = body.holds, body.report
    chunks = (
        _dumps(list(holds[i : i + MAX_EVENT_HOLDS]))[1:-1]
        for i in range(0, len(holds), MAX_EVENT_HOLDS)
    )
    return (
        f"[{_dumps(body.type.value)},{_dumps(body.holder)},[{','.join(chunks)}],"
        f"{_dumps(body.block)},{report.text if isinstance(report, Encoded) else _dumps(report)},"
        f"{_dumps(body.previous)}]"
    )


class Revision:
    """One committed change: its number, when, and what it did."""

    __slots__ = ("rev", "time", "bodies", "_json")

    def __init__(self, rev: int, time: float, bodies: Sequence[EventBody]) -> None:
        self.rev = rev
        self.time = time
        self.bodies = bodies
        self._json: str | None = None

    @property
    def weight(self) -> int:
        """What keeping it costs, roughly: one per body, hold and report entry."""
        return sum(b.weight for b in self.bodies)

    def parts(self) -> list[Event]:
        """Its events, bodies cut at ``MAX_EVENT_HOLDS`` holds: new ones at each call
        (``EventLog.publish`` makes them once and shares them by every class; the
        revision does not keep them). Cost: O(holds)."""
        pieces: list[tuple[EventBody, HoldRefs]] = []
        for body in self.bodies:
            holds = body.holds
            if len(holds) <= MAX_EVENT_HOLDS:
                pieces.append((body, holds))
                continue
            for start in range(0, len(holds), MAX_EVENT_HOLDS):
                pieces.append((body, holds[start : start + MAX_EVENT_HOLDS]))
        n = len(pieces)
        return [
            Event(self.rev, self.time, body, holds, i, n)
            for i, (body, holds) in enumerate(pieces, 1)
        ]

    # -- what the store keeps ------------------------------------------------------------

    def to_json(self) -> str:
        """The bodies as the store keeps them (compact; ``from_json`` reads it back; an
        encoded report is spliced in): ``json.dumps`` of ``[[type, holder, holds, block,
        report, previous], ...]``.

        The store's writer thread calls it. A C call holds the GIL for as long as it
        runs, and a 65,536-hold body is 15-60 ms of ``json.dumps``: the event loop would
        stand still meanwhile. So the holds are encoded ``MAX_EVENT_HOLDS`` at a time,
        with Python steps in between where the loop's thread can take the GIL back.
        Made once (the store's writer makes it, then memory keeps it: ``core.watchers``).
        Cost: O(holds), in chunks."""
        if self._json is None:
            self._json = "[" + ",".join(_body_json(b) for b in self.bodies) + "]"
        return self._json

    @classmethod
    def from_json(cls, rev: int, time: float, text: str) -> Revision:
        bodies = [
            EventBody(
                EventType(kind),
                holder,
                tuple([(pfn, order) for pfn, order in holds]),
                block,
                report,
                tuple(previous),
            )
            for kind, holder, holds, block, report, previous in json.loads(text)
        ]
        return cls(rev, time, bodies)

