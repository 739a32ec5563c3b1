"""An unauthenticated body of nearly 8 MiB is refused before it is read (issue 11, finding 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pageholder.service.api import create_app
from pageholder.service.settings import Settings

TOKEN = "auth-first-admin-token-0123456789"
BODY = json.dumps({"holder": "x", "pages": [{"pfn": 1 << 20, "order": 0}] * 200_000}).encode()


async def call(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, int, bytes]:
    """POST BODY to batch-set; returns (status, body bytes the app read, answer)."""
    sent = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += len(BODY)
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/holds/batch-set",
        "raw_path": b"/v1/holds/batch-set",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"r"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], sent, answer


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Bearer not-a-token")], [(b"authorization", b"Basic eDp5")]],
    ids=["no token", "unknown token", "not bearer"],
)
async def test_an_unauthenticated_big_body_is_refused_before_it_is_read(
    headers: list[tuple[bytes, bytes]],
) -> None:
    app = create_app(Settings(data_dir=":memory:", admin_token=TOKEN))
    async with app.router.lifespan_context(app):
        status, read, answer = await call(app, headers)
    assert status == 401 and json.loads(answer)["code"] == "unauthorized"
    assert read == 0  # not a byte of the body was read, let alone parsed


async def test_an_authenticated_body_is_still_read() -> None:
    app = create_app(Settings(data_dir=":memory:", admin_token=TOKEN))
    async with app.router.lifespan_context(app):
        status, read, _ = await call(app, [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert read > 0 and status in (404, 413, 422)  # read, then judged
