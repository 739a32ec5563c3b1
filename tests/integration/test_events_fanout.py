"""What one event costs with many subscribers, counted rather than timed: it is
encoded once however many streams send it; what piles up goes to a subscriber in one
write; a stream's body chunks go past the app's middlewares (its start does not); a
subscriber that takes no bytes is dropped after the send timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pageholder.service.api.chunkwrites import ChunkWriter
from pageholder.service.api.routes import events as events_route
from pageholder.service.core import events as events_core

from .watching import (
    DEADLINE_S,
    EVENTS_REQUEST,
    HOST,
    NORMAL,
    serving,
    stuck_subscriber,
    subscribed,
)


class RawStream:
    """A subscriber on a bare socket: the bytes it got, and whether ``id: rev`` is in."""

    def __init__(self) -> None:
        self.received = b""
        self.task: asyncio.Task[None] | None = None

    async def open(self, port: int) -> RawStream:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(EVENTS_REQUEST)

        async def read() -> None:
            try:
                while chunk := await reader.read(1 << 16):
                    self.received += chunk
            finally:
                writer.close()

        self.task = asyncio.create_task(read())
        return self

    async def until(self, rev: int) -> None:
        mark = f"id: {rev}\n".encode()
        async with asyncio.timeout(DEADLINE_S):
            while mark not in self.received:
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Spy:
    """Counts the ``http.response.*`` messages of ``/v1/events`` sent through it."""

    seen: list[str]

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != events_route.EVENTS_PATH:
            await self.app(scope, receive, send)
            return

        async def spied(message: Message) -> None:
            self.seen.append(message["type"])
            await send(message)

        await self.app(scope, receive, spied)


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Count calls of ``owner.name`` (a function or method), which still runs."""
    calls = [0]
    original: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


async def test_an_event_is_encoded_once_however_many_subscribers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = counting(monkeypatch, events_core, "_iso")  # once per event's JSON
    framed = counting(monkeypatch, events_route, "frame")
    async with serving() as served, served.client() as admin:
        streams = [await RawStream().open(served.port) for _ in range(50)]
        await subscribed(served.registry, 50)
        await admin.create_holder("nic0")
        await admin.hold(NORMAL, "nic0")
        for stream in streams:
            await stream.until(2)
        # two revisions of one part each: one JSON and one SSE frame apiece, not 50
        assert encoded[0] == 2 and framed[0] == 2
        assert all(s.received.count(b"data: ") == 2 for s in streams)
        for stream in streams:
            await stream.close()


async def test_a_streams_chunks_skip_the_middlewares_and_what_piles_up_is_one_write() -> None:
    """Under a server without chunk writers (plain uvicorn): through the ASGI send."""
    outside: list[str] = []  # outside every middleware of the app: every send
    inside: list[str] = []  # inside them all, next to the routes

    def spies(app: FastAPI) -> None:
        app.add_middleware(Spy, seen=outside)  # outermost
        app.user_middleware.append(Middleware(Spy, seen=inside))  # innermost

    # a long flush interval: everything published within it goes out at its end
    async with serving(prepare=spies, events_flush_interval_s=1.0, plain=True) as served:
        registry = served.registry
        stream = await RawStream().open(served.port)
        await subscribed(registry, 1)
        await registry.add_holder("nic0")  # rings at once: the interval starts now
        await stream.until(1)
        sent = outside.count("http.response.body")
        for i in range(20):
            await registry.add_holder(f"nic{i + 1}")
        await stream.until(21)
        # 20 revisions, one ring: one write (the ring may split them once at most)
        assert 1 <= outside.count("http.response.body") - sent <= 2
        # every chunk went past the middlewares; the start went through them all
        assert inside == ["http.response.start"]
        assert outside[0] == "http.response.start"
        await stream.close()


@pytest.mark.parametrize("plain", [False, True], ids=["serve-protocol", "plain-uvicorn"])
async def test_a_subscriber_that_takes_no_bytes_is_dropped_after_the_send_timeout(
    plain: bool,
) -> None:
    # a buffer that never overflows: only the send timeout can drop the stuck one
    async with serving(events_buffer=1 << 20, events_send_timeout_s=0.5, plain=plain) as served:
        async with served.client() as admin:
            await admin.create_holder("balloon")
            log = served.registry.events
            stuck = stuck_subscriber(served.port)
            await subscribed(served.registry, 1)
            # ~1.8 MB of SSE a revision: more than the socket buffers hold
            for _ in range(4):
                await admin.batch_set("balloon", ranges=[(NORMAL, 65536)])
                await admin.batch_unset("balloon", ranges=[(NORMAL, 65536)])
            async with asyncio.timeout(DEADLINE_S):
                while log.watchers:
                    await asyncio.sleep(0.01)
            assert log.overflows == 0
            stuck.close()


async def test_under_serves_protocol_a_rings_chunks_go_straight_to_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pageholder serve``'s protocol: each ring's chunk is written by the stream's
    ``ChunkWriter`` (no ASGI send, no copy), framed as the send would have, whole."""
    outside: list[str] = []
    answers: list[bool] = []
    write = ChunkWriter.__call__

    def answered(self: ChunkWriter, body: bytes) -> bool:
        answers.append(write(self, body))
        return answers[-1]

    monkeypatch.setattr(ChunkWriter, "__call__", answered)

    def spies(app: FastAPI) -> None:
        app.add_middleware(Spy, seen=outside)

    async with serving(prepare=spies, events_flush_interval_s=0.2) as served:
        registry = served.registry
        streams = [await RawStream().open(served.port) for _ in range(3)]
        await subscribed(registry, 3)
        for i in range(20):
            await registry.add_holder(f"nic{i}")
        for stream in streams:
            await stream.until(20)
        assert answers.count(True) >= 3  # at least a ring's chunk per stream
        # through the send: each stream's first line (``id: 0``), and only the rings'
        # chunks the writer turned down (bytes were waiting: it never is here, but may)
        assert outside.count("http.response.body") == 3 + answers.count(False)
        for stream in streams:
            head, _, body = stream.received.partition(b"\r\n\r\n")
            assert b"transfer-encoding: chunked" in head.lower()
            events = _unchunked(body).split(b"\n\n")
            ids = [int(e.split(b"id: ")[1].split(b"\n")[0]) for e in events if b"data: " in e]
            assert ids == list(range(1, 21))
            await stream.close()


def _unchunked(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body (so far) undone; fails on a malformed chunk."""
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0 or len(rest) < size + 2:
            break
        assert rest[size : size + 2] == b"\r\n"
        out += rest[:size]
        body = rest[size + 2 :]
    return out
