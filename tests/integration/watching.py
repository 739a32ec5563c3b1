"""What the watch tests share: a registry served by uvicorn in this process (a real
socket: SSE streams need one, ASGITransport buffers whole answers), a TCP proxy on
loopback that can cut every connection or point at another server, and readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from pageholder.client import AsyncPageHolderClient, Event
from pageholder.service.api import create_app
from pageholder.service.api.deadlines import with_deadlines
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings

HOST = "127.0.0.1"
TOKEN = "watch-admin-token-0123456789abcdef"
NORMAL = 1 << 20
BLOCK_PAGES = 32768
DEADLINE_S = 20.0
#: ``GET /v1/events`` as a bare socket sends it (admin: every event)
EVENTS_REQUEST = (
    "GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    f"Authorization: Bearer {TOKEN}\r\n\r\n"
).encode()


def stuck_subscriber(port: int) -> socket.socket:
    """A subscriber that sends its request and then never reads a byte (a 4 KiB
    receive buffer: the server's sends block soon)."""
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((HOST, port))
    stuck.sendall(EVENTS_REQUEST)
    return stuck


async def releases_everything(
    holder: Holder, pages: Sequence[PageRef], *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    return ReleaseAnswer.all_released(pages)


class _Embedded(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns the signals
        pass


@dataclass
class Served:
    app: FastAPI
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def registry(self) -> Registry:
        registry: Registry = self.app.state.service.registry
        return registry

    def client(self, token: str = TOKEN) -> AsyncPageHolderClient:
        return AsyncPageHolderClient(self.url, token)


@contextlib.asynccontextmanager
async def serving(
    *, prepare: Callable[[FastAPI], None] | None = None, plain: bool = False, **settings: Any
) -> AsyncIterator[Served]:
    """The registry app (``Settings(**settings)``, :memory: unless given) on a free
    loopback port, with its lifespan, for the ``async with`` block; ``prepare(app)``
    before it serves (to add middleware, say). Served over the HTTP protocol ``pageholder
    serve`` runs (its event streams' chunks written straight to the connection:
    ``chunkwrites.py``), or ``plain`` uvicorn's (every chunk through the ASGI send)."""
    settings.setdefault("data_dir", ":memory:")
    config_of = Settings(admin_token=TOKEN, **settings)
    app = create_app(config_of, release_caller=releases_everything)
    if prepare is not None:
        prepare(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    protocol = with_deadlines(config_of.header_timeout_s, config_of.body_timeout_s)
    config = uvicorn.Config(
        app,
        log_level="warning",
        timeout_graceful_shutdown=2,
        http="auto" if plain else protocol,
    )
    server = _Embedded(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.01)
        yield Served(app, port)
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(DEADLINE_S):
                await task
        if not task.done():
            task.cancel()
        sock.close()


@dataclass
class Proxy:
    """A loopback TCP proxy to ``target`` port; ``cut()`` drops every connection."""

    target: int
    port: int = 0
    connections: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Collector:
    """Runs ``client.watch(...)`` in a task and keeps what it yields."""

    def __init__(self, client: AsyncPageHolderClient, **watch: Any) -> None:
        self.client = client
        self.events: list[Event] = []
        self.changed = asyncio.Condition()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(watch))

    async def _run(self, watch: dict[str, Any]) -> None:
        try:
            async for event in self.client.watch(**watch):
                async with self.changed:
                    self.events.append(event)
                    self.changed.notify_all()
        except BaseException as exc:
            self.error = exc
            async with self.changed:
                self.changed.notify_all()
            raise

    async def until(self, rev: int, timeout_s: float = DEADLINE_S) -> list[Event]:
        """Wait (bounded) until an event of revision ``rev`` or later arrived."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(
                lambda: self.error is not None or any(e.rev >= rev for e in self.events)
            )
        if self.error is not None:
            raise self.error
        return self.events

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        await self.client.aclose()


def revs(events: Sequence[Event]) -> list[int]:
    """The revisions of ``events``, one per revision (parts of one count once)."""
    return list(dict.fromkeys(e.rev for e in events))


async def subscribed(registry: Registry, count: int) -> None:
    """Wait (bounded) until ``count`` streams follow the registry live."""
    async with asyncio.timeout(DEADLINE_S):
        while registry.events.watchers < count:
            await asyncio.sleep(0.005)
