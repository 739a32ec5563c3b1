"""Read deadlines on every connection: a client must send its headers within
``header_timeout_s`` of connecting (or of its previous request) and its whole body
within ``body_timeout_s`` of its headers, or the connection is closed.

Without them, a connection that drips a byte a second holds a socket and a request task
forever (uvicorn has a keep-alive timeout between requests, none while one is read),
and keeps a graceful shutdown waiting. The deadlines are timers on uvicorn's httptools
protocol: armed when a request starts, cancelled when its part has arrived.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pageholder.service.api.chunkwrites import ChunkWrites


class ReadDeadlines(ChunkWrites):
    """uvicorn's httptools protocol with header and body read deadlines
    (``with_deadlines``), and chunk writers for the event streams (``ChunkWrites``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()  # the app's receive() then says http.disconnect

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()


def with_deadlines(header_timeout_s: float, body_timeout_s: float) -> type[ReadDeadlines]:
    """The protocol class to give uvicorn (``http=``) with these deadlines."""
    return type(
        "ReadDeadlines",
        (ReadDeadlines,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
