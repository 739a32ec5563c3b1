"""The access log of ``pageholder serve``: uvicorn's lines, written in batches.

uvicorn's own access log costs ~14 us a request on this kind of machine (a
``LogRecord``, two copies of it in ``AccessFormatter``, a ``%`` format and a write and
flush per line), as much as the whole of a fast lookup. ``AccessLog`` writes the very
same line -- built by uvicorn's own helpers and formatter pieces: client address, path
with query string, status phrase, the colours when the stream is a terminal -- for
about a microsecond, and writes the lines in batches: at most ``FLUSH_AFTER_S`` after a
line was logged (one write for all the lines of that interval, as nginx's ``access_log
... flush=``), at once past ``MAX_LINES``, and when the server shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, TextIO, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn._ansi import style as ansi_style  # what AccessFormatter itself uses
from uvicorn.logging import AccessFormatter
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

#: How long a line may wait in the buffer.
FLUSH_AFTER_S = 0.05
#: Lines past which the buffer is written at once.
MAX_LINES = 1024
#: Paths that uvicorn's ``urllib.parse.quote(path)`` leaves as they are (its always-safe
#: characters and "/"): most of them, logged without the call.
SAFE_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")
#: uvicorn's log levels at which its access log (an INFO logger) writes.
LOGGING_LEVELS = ("trace", "debug", "info")


def logs_access(log_level: str) -> bool:
    return log_level.lower() in LOGGING_LEVELS


class AccessLog:
    """ASGI wrapper logging every HTTP response's start, as uvicorn's access log does
    (run uvicorn with ``access_log=False`` around it)."""

    def __init__(self, app: ASGIApp, stream: TextIO, *, colors: bool | None = None) -> None:
        self.app = app
        self.stream = stream
        self.formatter = AccessFormatter(use_colors=colors)  # None: colours on a terminal
        level = "INFO"
        if self.formatter.use_colors:
            level = self.formatter.color_level_name(level, logging.INFO)
        # uvicorn's default format: '%(levelprefix)s %(client_addr)s - "%(request_line)s"
        # %(status_code)s', with levelprefix the level name, a colon, padding to 9.
        self.prefix = f"{level}:{' ' * (8 - len('INFO'))} "
        self.statuses: dict[int, str] = {}
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":

            async def logged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    self.log(scope, message["status"])
                await send(message)

            await self.app(scope, receive, logged)
        elif scope["type"] == "lifespan":

            async def flushed(message: Message) -> None:
                if message["type"].startswith("lifespan.shutdown"):
                    self.flush()
                await send(message)

            await self.app(scope, receive, flushed)
        else:
            await self.app(scope, receive, send)

    def line(self, scope: Scope, status: int) -> str:
        """The line uvicorn's access log writes for this request and status."""
        http: Any = cast(Any, scope)  # uvicorn's helpers are typed for its own scope type
        phrase = self.statuses.get(status)
        if phrase is None:
            phrase = self.statuses[status] = self.formatter.get_status_code(status)
        path = scope["path"]
        if scope["query_string"] or not SAFE_PATH.fullmatch(path):
            path = get_path_with_query_string(http)  # quoting, as uvicorn logs it
        request_line = f"{scope['method']} {path} HTTP/{scope['http_version']}"
        if self.formatter.use_colors:
            request_line = ansi_style(request_line, bold=True)
        return f'{self.prefix}{get_client_addr(http)} - "{request_line}" {phrase}\n'

    def log(self, scope: Scope, status: int) -> None:
        self.lines.append(self.line(scope, status))
        if len(self.lines) >= MAX_LINES:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        """Write every buffered line (one write) and flush the stream."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.lines:
            return
        text = "".join(self.lines)
        self.lines.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or full: the log is lost, as logging's handleError would
