"""/v1/events: every committed change, as a resumable Server-Sent Events stream.

A stream starts with a bare ``id: <rev>`` (the revision it starts after: an
``EventSource`` takes it as its last event id without dispatching anything), catches
up on the revisions after it (from memory, or from the store for older ones), then
follows live revisions as they commit. The SSE ``id`` goes only on the last part of
a revision that this subscriber is shown, so resuming from it never splits a
revision. A subscriber that falls ``events_buffer`` parts behind gets ``event:
overflow`` and the stream ends; it resumes from its last id. sse-starlette frames the
events, sends the keep-alive comments and ends the streams at shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from pageholder.service.api.auth import Principal
from pageholder.service.api.chunkwrites import CHUNKS
from pageholder.service.api.deps import PrincipalDep
from pageholder.service.api.problems import documented
from pageholder.service.api.sends import send_within, start_send
from pageholder.service.api.state import ServiceState
from pageholder.service.core.errors import EventsCompacted, InvalidRequest
from pageholder.service.core.events import CATEGORIES, Event
from pageholder.service.core.watchers import Deliver, EventLog, visible
from pageholder.service.storage.protocol import DurableStore

EVENTS_PATH: Final = "/v1/events"
#: The scope key of the ``send`` from outside the app's middleware (``StreamBodies``).
DIRECT_SEND: Final = "pageholder.direct_send"

router = APIRouter(prefix=EVENTS_PATH, tags=["events"])
log = logging.getLogger("pageholder.events")

EVENT_STREAM: Final = "text/event-stream"
SEP: Final = "\n"
#: Revisions read from the store per step of a catch-up.
CATCH_UP_PAGE: Final = 256
REVISION_HEADER: Final = "X-Pageholder-Revision"

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A Server-Sent Events stream. First a bare `id: <rev>` (where the stream "
            "starts), then per event `event: <type>`, `data: {rev, type, time, part, parts, "
            "holder, holds: [{pfn, order}], block, report, previous}` and, on the last part "
            "of a revision, `id: <rev>`. `: keep-alive` comments in between. "
            "`event: overflow` then the end: resume from the last id."
        ),
        "content": {
            EVENT_STREAM: {
                # One SSE event (what an EventSource hands over): its fields as text.
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string"},
                        "data": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer"},
                    },
                },
                "example": {
                    "event": "hold.created",
                    "id": "42",
                    "data": (
                        '{"rev":42,"type":"hold.created","time":"2026-11-26T15:00:00+00:00",'
                        '"part":1,"parts":1,"holder":"nic0","holds":[{"pfn":1048576,"order":9}],'
                        '"block":null,"report":null,"previous":[]}'
                    ),
                },
            }
        },
    },
    **documented("unauthorized", "events_compacted", "invalid_request"),
}


def frame(event: Event, with_id: bool) -> bytes:
    """The SSE frame of one part, made once per form and shared by every subscriber:
    sse-starlette's ``ServerSentEvent(...).encode()`` (``id``, ``event``, ``data``, in
    that order), written out directly when the data has no line break (JSON without
    indent never has one) instead of split and rejoined line by line."""
    encoded = event.encoded.get(with_id)
    if encoded is None:
        data, kind = event.data, event.type.value
        if "\n" in data or "\r" in data:
            encoded = ServerSentEvent(
                data, event=kind, id=str(event.rev) if with_id else None, sep=SEP
            ).encode()
        elif with_id:
            encoded = f"id: {event.rev}\nevent: {kind}\ndata: {data}\n\n".encode()
        else:
            encoded = f"event: {kind}\ndata: {data}\n\n".encode()
        event.encoded[with_id] = encoded
    return encoded


def frames(revisions: Sequence[list[Event]]) -> bytes:
    """Every part, the ``id`` on the last one of each revision: one chunk to send.
    Cost: a lookup per part (each frame is made once, by the first subscriber)."""
    out: list[bytes] = []
    append = out.append
    for parts in revisions:
        last = parts[-1]
        for event in parts:
            with_id = event is last
            encoded = event.encoded.get(with_id)
            append(frame(event, with_id) if encoded is None else encoded)
    return b"".join(out)


def parse_types(types: str | None) -> frozenset[str] | None:
    if types is None or not types.strip():
        return None
    wanted = frozenset(t.strip() for t in types.split(",") if t.strip())
    unknown = wanted - CATEGORIES
    if unknown:
        raise InvalidRequest(
            f"unknown event types {sorted(unknown)}; known: {sorted(CATEGORIES)}", field="types"
        )
    return wanted


def start_after(
    log: EventLog, store: DurableStore | None, since: int | None, last_id: str | None
) -> int:
    """Where the stream starts (``Last-Event-ID`` over ``since``, else now), or 410."""
    after = since
    if last_id is not None and last_id.strip():
        if not last_id.strip().isdigit():
            raise InvalidRequest("Last-Event-ID must be a revision number", field="Last-Event-ID")
        after = int(last_id)
    if after is None:
        return log.published
    oldest = (store.compacted_through if store is not None else log.evicted_through) + 1
    if after > log.revision:
        raise EventsCompacted(
            f"revision {after} is ahead of this registry (at {log.revision}); list again",
            oldest_rev=oldest,
        )
    if not log.covers(after) and (store is None or after < store.compacted_through):
        raise EventsCompacted(
            f"revisions after {after} are no longer kept; the oldest is {oldest}",
            oldest_rev=oldest,
        )
    return after


class Outlet:
    """Where a stream's body chunks go once the response runs (``EventStream`` fills
    it): the stream hands its watcher a write of its own, for the log's rings to make
    while the stream's task sleeps (``Watcher.deliver``)."""

    __slots__ = ("send", "send_timeout", "chunks")

    def __init__(self) -> None:
        self.send: Send | None = None
        self.send_timeout: float | None = None
        #: the server's chunk writer, if it has one (``chunkwrites.py``)
        self.chunks: Callable[[bytes], bool] | None = None


async def stream(
    state: ServiceState,
    principal: Principal,
    categories: frozenset[str] | None,
    after: int,
    outlet: Outlet | None = None,
) -> AsyncIterator[bytes]:
    settings = state.settings
    log, store = state.registry.events, state.store
    viewer = None if principal.is_admin else principal.holder
    yield ServerSentEvent(id=str(after), retry=1000, sep=SEP).encode()
    # Catch up from the store while memory no longer has what comes next.
    while not log.covers(after):
        if store is None:
            yield _overflow(after)
            return
        older = await asyncio.to_thread(store.read_revisions, after, CATCH_UP_PAGE)
        if after < store.compacted_through or not older:
            # Compacted while we read: the client resumes, and hears 410.
            yield _overflow(after)
            return
        chunk = [parts for r in older if (parts := visible(r, viewer, categories))]
        after = older[-1].rev
        if chunk:
            yield frames(chunk)
    backlog, watcher = log.subscribe(after, viewer, categories, settings.events_buffer)
    shown_to = watcher.shown_to
    rest: Awaitable[None] | None = None
    failed: Exception | None = None

    def deliver_to(send: Send, chunks: Callable[[bytes], bool] | None) -> Deliver:
        def deliver(chunk: bytes, last: int) -> bool:
            """A ring's write, while this stream's task sleeps: straight to the
            connection when the server lets us and nothing waits to be sent, else
            through the send, which does not wait while the reader keeps up; when it
            has to, the task finishes it."""
            nonlocal after, rest, failed
            after = last
            if chunks is not None and chunks(chunk):
                return True
            try:
                rest = start_send(
                    send, {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            except Exception as exc:  # the task raises it
                failed = exc
                return False
            return rest is None

        return deliver

    try:
        if backlog:
            yield frames(backlog)
        if outlet is not None and outlet.send is not None:
            # Past here the rings write every chunk, each while the task sleeps in
            # wait(); the task itself yields only what is left after a busy write.
            watcher.attach(deliver_to(outlet.send, outlet.chunks), frames)
        while True:
            # Woken with every other subscriber by the log's ring, at most every
            # events_flush_interval_s: under load, what piled up meanwhile goes out as
            # one chunk, one send per subscriber per interval instead of one per
            # revision. With deliver, woken only when a write has to wait.
            await watcher.wait()
            if watcher.busy:
                if failed is not None:
                    raise failed
                if rest is not None:
                    await _finish(rest, outlet.send_timeout if outlet is not None else None)
                    rest = None
                watcher.busy = False
            if watcher.overflowed:
                yield _overflow(after)
                return
            taken = watcher.take()
            if taken:
                after = taken[-1][0].rev
                # one chunk per class per ring: every admin sends the same bytes object
                yield log.shared_chunk(shown_to, taken, frames)
    finally:
        watcher.close()


async def _finish(rest: Awaitable[None], timeout: float | None) -> None:
    """The rest of a ring's write that had to wait, under the stream's send deadline."""
    if timeout is None:
        await rest
        return
    try:
        async with asyncio.timeout(timeout):
            await rest
    except TimeoutError:
        raise SendTimeoutError() from None


class EventStream(EventSourceResponse):
    """sse-starlette's response; a subscriber dropped for taking no bytes is logged, not
    a crash (its connection is closed either way). The response's start goes through
    every middleware; its body chunks go straight to ``scope[DIRECT_SEND]`` when the
    app put one there (``middleware.StreamBodies``). ``outlet`` gets the body's send,
    for the rings' writes."""

    #: set by the route (not an ``__init__`` argument: FastAPI reads the default
    #: ``status_code`` of a response class from its ``__init__`` for the OpenAPI)
    outlet: Outlet | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct: Send | None = scope.get(DIRECT_SEND)
        if direct is not None:
            send = _bodies_to(direct, send)
        if self.outlet is not None:
            self.outlet.send = direct if direct is not None else send
            self.outlet.send_timeout = self.send_timeout
            self.outlet.chunks = scope.get("extensions", {}).get(CHUNKS)
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("dropped an event subscriber that took no bytes for %s s", self.send_timeout)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        """sse-starlette's per-send deadline without a timer per send (``sends.py``):
        anyio's ``move_on_after`` cost more than the socket write it guarded, on every
        send of every stream."""
        if self.send_timeout is None:
            await send(message)
            return
        try:
            await send_within(send, message, self.send_timeout)
        except TimeoutError:
            raise SendTimeoutError() from None


def _bodies_to(direct: Send, send: Send) -> Send:
    """``send`` for a response's start, ``direct`` for its body."""

    async def split(message: Message) -> None:
        if message["type"] == "http.response.body":
            await direct(message)
        else:
            await send(message)

    return split


def _overflow(after: int) -> bytes:
    data = json.dumps({"rev": after, "detail": "fell too far behind; resume from the last id"})
    return ServerSentEvent(data, event="overflow", sep=SEP).encode()


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep=SEP)


@router.get(
    "",
    name="watch_events",
    response_class=EventStream,
    responses=STREAM_DOC,
)
async def watch_events(
    request: Request,
    principal: PrincipalDep,
    since: Annotated[
        int | None,
        Query(ge=0, description="send every change after this revision (default: from now)"),
    ] = None,
    types: Annotated[
        str | None,
        Query(description="comma-separated categories: hold, holder, block (default: all)"),
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="like `since`; wins over it")
    ] = None,
) -> EventStream:
    """Every committed change after `since`, in revision order, then live (SSE).

    Admin tokens see every event; a holder's token its own holder and hold events
    (and overwrites of its holds) and every block event. 410 `events_compacted` (with
    `oldest_rev`) when `since` is older than what the registry keeps: list again.
    """
    state: ServiceState = request.app.state.service
    categories = parse_types(types)
    after = start_after(state.registry.events, state.store, since, last_event_id)
    settings = state.settings
    outlet = Outlet()
    response = EventStream(
        stream(state, principal, categories, after, outlet),
        headers={REVISION_HEADER: str(after)},
        ping=settings.events_keepalive_s,
        ping_message_factory=_keepalive,
        send_timeout=settings.events_send_timeout_s,
        sep=SEP,
    )
    response.outlet = outlet
    return response
