"""AccessLog writes uvicorn's access-log lines, in batches, and all of them by shutdown."""

from __future__ import annotations

import asyncio
import io
import logging
import urllib.parse

import pytest
from starlette.types import Message, Receive, Scope, Send
from uvicorn.logging import AccessFormatter

from pageholder.service.api.access_log import FLUSH_AFTER_S, AccessLog, logs_access

UVICORN_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'


def http_scope(path: str, query: bytes = b"", client: tuple[str, int] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "http_version": "1.1",
        "client": client,
    }


def uvicorn_line(scope: Scope, status: int, colors: bool) -> str:
    """What uvicorn's access logger writes: its formatter, its default format, its args."""
    client = scope["client"]
    path = urllib.parse.quote(scope["path"]) + (
        f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (f"{client[0]}:{client[1]}" if client else "", "GET", path, "1.1", status),
        None,
    )
    return AccessFormatter(UVICORN_FORMAT, use_colors=colors).format(record) + "\n"


@pytest.mark.parametrize("colors", [False, True])
@pytest.mark.parametrize(
    ("scope", "status"),
    [
        (http_scope("/v1/pages/1048576", client=("127.0.0.1", 51234)), 200),
        (http_scope("/v1/pages", b"start=1&limit=5", ("::1", 8)), 422),
        (http_scope("/with space", client=("10.0.0.1", 1)), 404),
        (http_scope("/ümlaut/%41;x=1", client=("10.0.0.1", 1)), 404),
        (http_scope("/A-z_0.9~/", client=("10.0.0.1", 1)), 404),
        (http_scope("/healthz"), 599),  # no client, no phrase
        (http_scope("/v1/holders", client=("127.0.0.1", 2)), 201),
        (http_scope("/x", client=("127.0.0.1", 3)), 503),
        (http_scope("/x", client=("127.0.0.1", 3)), 307),
        (http_scope("/x", client=("127.0.0.1", 3)), 101),
    ],
)
def test_lines_are_uvicorns(scope: Scope, status: int, colors: bool) -> None:
    log = AccessLog(lambda *a: None, io.StringIO(), colors=colors)  # type: ignore[arg-type,return-value]
    assert log.line(scope, status) == uvicorn_line(scope, status, colors)


def test_the_access_log_follows_uvicorns_log_level() -> None:
    assert logs_access("info") and logs_access("DEBUG") and logs_access("trace")
    assert not logs_access("warning") and not logs_access("error")


async def test_lines_are_written_in_one_batch_soon_after_and_at_shutdown() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    out = io.StringIO()
    log = AccessLog(app, out, colors=False)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    scope = http_scope("/healthz", client=("127.0.0.1", 9))
    for _ in range(3):
        await log(dict(scope), receive, send)
    assert out.getvalue() == ""  # buffered, not one write per line
    deadline = asyncio.get_running_loop().time() + 100 * FLUSH_AFTER_S
    while not out.getvalue() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(FLUSH_AFTER_S / 5)
    assert out.getvalue() == log.line(scope, 200) * 3
    # A line logged just before shutdown is written by the lifespan's end, not later.
    await log(dict(scope), receive, send)

    async def shutdown() -> Message:
        return {"type": "lifespan.shutdown"}

    await log({"type": "lifespan"}, shutdown, send)
    assert out.getvalue() == log.line(scope, 200) * 4
    assert log.timer is None
