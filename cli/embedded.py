"""A registry served in this process, for ``pageholder demo``: uvicorn on a free
loopback port, in-memory state, the default layout. Imported only when the demo starts
one, so that the other commands never load the server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn

from pageholder.service.api import create_app
from pageholder.service.settings import Settings


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals (Ctrl-C) to the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def embedded_registry(host: str = "127.0.0.1") -> AsyncIterator[tuple[str, str]]:
    """A registry served in this event loop on a free port: yields ``(url, admin_token)``."""
    token = secrets.token_urlsafe(24)
    app = create_app(Settings(data_dir=":memory:", admin_token=token))
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it every keep-alive request waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-registry")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the embedded registry stopped while starting")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}", token
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()
