"""The fast page routes (fast.py) answer exactly as the FastAPI routes do.

Two apps get the same requests in the same order: one as shipped (``FastPages`` in
front), one without it (every request through FastAPI). Status, headers and bodies must
be the same; problem documents byte for byte, success bodies but for their ``since``
times (two registries, two clocks). The table walks good and bad input: pfn text,
bounds, bodies (malformed, wrong types, unknown fields, other content types), tokens,
403, 404, the 409s, release outcomes and the body limit; the request metrics of the two
apps must agree too. And the fast path must really have answered the good ones.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from pageholder.service.api import create_app
from pageholder.service.api.fast import HOT_ROUTES, FastPages
from pageholder.service.settings import Settings

from .conftest import ADMIN_TOKEN, NORMAL, ScriptedCaller

BODY_LIMIT = 4096
JSON = {"Content-Type": "application/json"}
SINCE = re.compile(rb'"since":"[^"]*"')
# a: releases, b: no release handler, r: refuses (ScriptedCaller goes by the URL's path)
HOLDERS = (("a", "http://127.0.0.1:9/ok"), ("b", None), ("r", "http://127.0.0.1:9/refuse"))


@dataclass
class Side:
    app: object
    client: httpx.AsyncClient
    tokens: dict[str, str]


def fast_pages(app: object) -> FastPages:
    """The FastPages instance in a started app's middleware stack."""
    layer = getattr(app, "middleware_stack", None)
    while layer is not None and not isinstance(layer, FastPages):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, FastPages)
    return layer


async def side(fast: bool) -> AsyncIterator[Side]:
    settings = Settings(data_dir=":memory:", admin_token=ADMIN_TOKEN, max_body_bytes=BODY_LIMIT)
    app = create_app(settings, release_caller=ScriptedCaller())
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPages]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            tokens = {"admin": ADMIN_TOKEN}
            for name, url in HOLDERS:
                answer = await client.post(
                    "/v1/holders",
                    json={"name": name, "release_url": url},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                )
                assert answer.status_code == 201, answer.text
                tokens[name] = answer.json()["token"]
            yield Side(app, client, tokens)


@pytest.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    async for fast in side(True):
        async for slow in side(False):
            yield fast, slow


P = NORMAL  # a pfn of the Normal zone, aligned for any order
HELD_BY_A = P + 512

# (method, path, who, headers, body): who is a token role, None (no header), or a raw
# Authorization header value. Requests run in this order on both apps.
CASES: list[tuple[str, str, str | None, dict[str, str], bytes | None]] = [
    # set-hold: good ones
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a"}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a"}'),  # unchanged
    ("PUT", f"/v1/pages/{HELD_BY_A}/hold", "a", {}, None),  # the caller's own, no body
    ("PUT", f"/v1/pages/{P + 1024}/hold", "b", JSON, b'{"order": 9}'),
    ("PUT", f"/v1/pages/{P + 4096}/hold", "r", JSON, b'{"holder":"r","order":0}'),
    (
        "PUT",
        f"/v1/pages/{P + 8192}/hold",
        "a",
        {"Content-Type": "application/json; charset=utf-8"},
        b"{}",
    ),
    ("PUT", f"/v1/pages/{P + 9000}/hold", "admin", JSON, b'{"holder": "a", "order": "3"}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "b", "overwrite": true}'),
    # set-hold: refusals
    ("PUT", f"/v1/pages/{P}/hold", "a", JSON, b"{}"),  # 409 page_held (b holds it now)
    ("PUT", f"/v1/pages/{P}/hold", "a", JSON, b'{"overwrite": true}'),  # 403
    ("PUT", f"/v1/pages/{P}/hold", "a", JSON, b'{"holder": "b"}'),  # 403, another holder
    ("PUT", f"/v1/pages/{P + 1}/hold", "admin", JSON, b'{"holder": "a", "order": 1}'),
    ("PUT", f"/v1/pages/{P + 1030}/hold", "admin", JSON, b'{"holder": "a"}'),  # inside b's
    ("PUT", f"/v1/pages/{P}/hold", "admin", {}, None),  # the admin must name the holder
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "nope"}'),
    ("PUT", "/v1/pages/0/hold", "admin", JSON, b'{"holder": "a"}'),  # pfn_not_found
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a"'),  # malformed JSON
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b"[]"),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b"null"),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'"a"'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": 5}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "A B"}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "order": 19}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "order": -1}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "order": NaN}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "order": 1.5}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "overwrite": "maybe"}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "a", "pages": 1}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", {"Content-Type": "text/plain"}, b'{"holder":"a"}'),
    ("PUT", f"/v1/pages/{P}/hold", "admin", {}, b'{"holder": "a"}'),  # no content type
    ("PUT", f"/v1/pages/{P}/hold", "admin", JSON, b'{"holder": "' + b"a" * 5000 + b'"}'),
    ("PUT", f"/v1/pages/{P}/hold", None, JSON, b'{"holder": "a"}'),
    ("PUT", f"/v1/pages/{P}/hold", "Bearer wrong-token", JSON, b'{"holder": "a"}'),
    ("PUT", "/v1/pages/-1/hold", "admin", JSON, b'{"holder": "a"}'),
    ("PUT", "/v1/pages/x/hold", None, JSON, b"{"),
    # lookups
    ("GET", f"/v1/pages/{P}", "admin", {}, None),
    ("GET", f"/v1/pages/{P + 1100}", "b", {}, None),  # inside an order-9 hold
    ("GET", f"/v1/pages/{P + 3}", "a", {}, None),  # free
    ("GET", f"/v1/pages/{P:012d}", "admin", {}, None),  # leading zeros
    ("GET", f"/v1/pages/+{P}", "admin", {}, None),
    ("GET", f"/v1/pages/{P}%20", "admin", {}, None),
    ("GET", "/v1/pages/0", "admin", {}, None),  # pfn_not_found
    ("GET", "/v1/pages/-1", "admin", {}, None),
    ("GET", f"/v1/pages/{2**52 + 1}", "admin", {}, None),
    ("GET", f"/v1/pages/{10**30}", "admin", {}, None),
    ("GET", "/v1/pages/1.5", "admin", {}, None),
    ("GET", "/v1/pages/abc", "admin", {}, None),
    ("GET", "/v1/pages/abc", None, {}, None),
    ("GET", f"/v1/pages/{P}", None, {}, None),
    ("GET", f"/v1/pages/{P}", "Bearer", {}, None),
    ("GET", f"/v1/pages/{P}", "Bearer ", {}, None),
    ("GET", f"/v1/pages/{P}", f"Basic {ADMIN_TOKEN}", {}, None),
    ("GET", f"/v1/pages/{P}", f"bearer {ADMIN_TOKEN}", {}, None),
    ("GET", f"/v1/pages/{P}", "Bearer not-a-token", {}, None),
    ("GET", f"/v1/pages/{P}", f"Bearer  {ADMIN_TOKEN} ", {}, None),
    ("GET", f"/v1/pages/{P}", f"Bearer {ADMIN_TOKEN[:-1]}", {}, None),
    ("HEAD", f"/v1/pages/{P}", "admin", {}, None),
    ("POST", f"/v1/pages/{P}", "admin", {}, None),
    ("GET", f"/v1/pages/{P}/", "admin", {}, None),
    # release
    ("POST", f"/v1/pages/{P + 4096}/release", "a", {}, None),  # 403: admin only
    ("POST", f"/v1/pages/{P + 4096}/release", None, {}, None),
    ("POST", f"/v1/pages/{P + 4096}/release", "admin", {}, None),  # 502 release_failed
    ("POST", f"/v1/pages/{P}/release", "admin", {}, None),  # 409 no_release_handler
    ("POST", f"/v1/pages/{P + 3}/release", "admin", {}, None),  # 404 page_not_held
    ("POST", f"/v1/pages/{HELD_BY_A}/release", "admin", {}, None),  # 200 released
    ("POST", "/v1/pages/-5/release", "admin", {}, None),
    # unset
    ("DELETE", f"/v1/pages/{P + 1030}/hold", "b", {}, None),  # 409 not_head
    ("DELETE", f"/v1/pages/{P + 1024}/hold", "a", {}, None),  # 403: b's hold
    ("DELETE", f"/v1/pages/{P + 1024}/hold", None, {}, None),
    ("DELETE", f"/v1/pages/{P + 1024}/hold", "b", {}, None),  # 204
    ("DELETE", f"/v1/pages/{P + 1024}/hold", "b", {}, None),  # 404 page_not_held
    ("DELETE", "/v1/pages/99999999999999999999/hold", "admin", {}, None),
    ("DELETE", f"/v1/pages/{P + 8192}/hold", "admin", {}, None),  # admin may unset any
    ("GET", f"/v1/pages/{P + 8192}", "admin", {}, None),
]


def headers_of(s: Side, who: str | None, extra: dict[str, str]) -> dict[str, str]:
    headers = dict(extra)
    if who in s.tokens:
        headers["Authorization"] = f"Bearer {s.tokens[who]}"
    elif who is not None:
        headers["Authorization"] = who
    return headers


async def test_fast_routes_answer_as_fastapi_does(sides: tuple[Side, Side]) -> None:
    fast, slow = sides
    answered = {}
    for method, path, who, extra, body in CASES:
        answers = []
        for s in (fast, slow):
            answers.append(
                await s.client.request(
                    method, path, headers=headers_of(s, who, extra), content=body
                )
            )
        a, b = answers
        where = f"{method} {path} as {who}: {a.status_code} {a.content!r}"
        assert a.status_code == b.status_code, where
        assert a.headers.multi_items() == b.headers.multi_items(), where
        if a.headers.get("content-type") == "application/problem+json":
            assert a.content == b.content, where
        else:
            assert SINCE.sub(b"", a.content) == SINCE.sub(b"", b.content), where
        answered[(method, path, who)] = a.status_code
    # The table reaches every outcome it claims to.
    statuses = set(answered.values())
    assert {200, 201, 204, 401, 403, 404, 405, 409, 413, 422, 502} <= statuses, statuses

    # The request metrics count both apps' requests under the same routes.
    def requests_metric(s: Side) -> list[str]:
        registry = s.app.state.service.metrics.registry  # type: ignore[attr-defined]
        return sorted(
            f"{m.name} {sample.labels} {sample.value}"
            for m in registry.collect()
            if m.name == "pageholder_requests"
            for sample in m.samples
            if sample.name.endswith("_total")
        )

    assert requests_metric(fast) == requests_metric(slow)
    # Every good request of the table was the fast path's, none of the slow app's.
    assert fast_pages(fast.app).taken == list(HOT_ROUTES)
    assert fast_pages(fast.app).answered >= 20
    with pytest.raises(AssertionError):
        fast_pages(slow.app)
