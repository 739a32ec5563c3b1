"""Watching a registry: its Server-Sent Events read as ``Event``s, sans I/O.

``Watch`` is what ``client.watch()`` keeps between connections: the last revision it
handed out (``last``), the request that resumes after it, and the parts of the
revision that is still arriving. The sync and async clients only open the stream, feed
it line by line (``Watch.feed``) and decide when to connect again::

    watch = Watch(since, types)
    while True:                                  # each connection
        request = watch.request()                # since=last, Last-Event-ID
        for line in response lines:
            for event in watch.feed(line):       # whole revisions, each rev once
                yield event
        ...  # dropped, overflowed, restarted: back off, connect again

A revision's parts are held back until its last part (the one with the SSE ``id``)
arrived, so a connection that drops in the middle of one never hands out half of it;
the next connection starts after ``last`` and sends it whole again. Revisions at or
below ``last`` are skipped: no duplicates, whatever the server resends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from ._models import parse
from ._receiver import Page

__all__ = ["Event", "Overflowed", "Watch"]

#: Event categories the server knows (``types=``).
CATEGORIES: Final = frozenset({"hold", "holder", "block"})
#: Seconds a watch keeps reconnecting without one successful connection before it
#: raises the last error.
RECONNECT_FOR_S: Final = 30.0
EVENT_STREAM: Final = "text/event-stream"


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change, or one part of it (``part`` of ``parts``; a revision with
    more than 4096 holds comes in several). ``holder``/``holds`` for ``holder.*`` and
    ``hold.*`` events, ``block`` (and ``report`` for an offline's outcome) for
    ``block.*`` ones; ``previous``: the holders a ``hold.overwritten`` took pages from."""

    rev: int
    type: str
    time: datetime
    part: int = 1
    parts: int = 1
    holder: str | None = None
    holds: tuple[Page, ...] = ()
    block: int | None = None
    report: dict[str, Any] | None = None
    previous: tuple[str, ...] = field(default_factory=tuple)


class Overflowed(Exception):
    """The server dropped this watcher (it fell behind): connect again from ``last``."""


class Watch:
    """A watch's state across connections; see the module docstring."""

    def __init__(self, since: int | None, types: Iterable[str] | None) -> None:
        self.last = since
        wanted = None if types is None else sorted(set(types))
        unknown = set(wanted or ()) - CATEGORIES
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; known: {sorted(CATEGORIES)}")
        self.types = wanted
        self._pending: list[Event] = []
        self._frame: dict[str, str] = {}
        self._data: list[str] = []

    def request(self) -> tuple[dict[str, str | int], dict[str, str]]:
        """Query parameters and headers of the next connection."""
        params: dict[str, str | int] = {}
        headers = {"Accept": EVENT_STREAM}
        if self.last is not None:
            params["since"] = self.last
            headers["Last-Event-ID"] = str(self.last)
        if self.types is not None:
            params["types"] = ",".join(self.types)
        return params, headers

    def connected(self) -> None:
        """A new connection: whatever was half-read belongs to the old one."""
        self._pending = []
        self._frame = {}
        self._data = []

    def feed(self, line: str) -> list[Event]:
        """One line of the stream (without its end of line); the events it completes."""
        if line:
            if line.startswith(":"):
                return []  # a comment: the keep-alive
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name in ("event", "id", "retry"):
                self._frame[name] = value
            return []
        frame, data = self._frame, self._data
        self._frame, self._data = {}, []
        return self._dispatch(frame, "\n".join(data) if data else None)

    def _dispatch(self, frame: dict[str, str], data: str | None) -> list[Event]:
        if frame.get("event") == "overflow":
            raise Overflowed(data or "overflow")
        rev_text = frame.get("id")
        if data is not None:
            event = _event(json.loads(data))
            if self.last is None or event.rev > self.last:
                self._pending.append(event)
        if rev_text is None or not rev_text.isdigit():
            return []
        rev = int(rev_text)
        if self.last is None or rev > self.last:
            self.last = rev
        # The id closes a revision (or, alone, says where the stream starts): hand out
        # what arrived of revisions up to it, in order.
        done = [e for e in self._pending if e.rev <= rev]
        self._pending = [e for e in self._pending if e.rev > rev]
        return done


def _event(data: dict[str, Any]) -> Event:
    data = dict(data)
    data["holds"] = tuple(Page(h["pfn"], h["order"]) for h in data.get("holds") or ())
    data["previous"] = tuple(data.get("previous") or ())
    known = {k: v for k, v in data.items() if k in Event.__dataclass_fields__}
    return parse(Event, known)
