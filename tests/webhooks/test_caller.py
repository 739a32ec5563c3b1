"""The webhook caller against a real receiver on loopback.

The receiver is a small Starlette app served by uvicorn inside the test's event loop.
It verifies every request's Standard Webhooks signature with the holder's secret (a
request that fails verification gets 401) and records what it got; each path plays one
kind of holder.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pydantic
import pytest
import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pageholder.service.core import errors
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import FailureReason, Holder, HoldState, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings
from pageholder.service.webhooks.caller import (
    DEFAULT_MAX_CALLS,
    DEFAULT_RETRY_MAX_S,
    DEFAULT_RETRY_MIN_S,
    EXCERPT_CHARS,
    WebhookCaller,
    answer_limit,
    new_webhook_secret,
)

SECRET = new_webhook_secret()
PAGES = [PageRef(1 << 20, 0), PageRef((1 << 20) + 512, 9), PageRef((1 << 20) + 1024, 0)]
#: Padding that takes an answer past its limit however few pages it answers for
PADDING = "x" * (2 << 20)


# --- the receiver -------------------------------------------------------------------


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    raw: bytes
    doc: dict[str, Any]


@dataclass
class Receiver:
    secret: str
    base_url: str = ""
    calls: list[Call] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # paths whose signature failed
    attempts: Counter[str] = field(default_factory=Counter)  # per webhook-id
    unblock: asyncio.Event = field(default_factory=asyncio.Event)

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]

    def build(self) -> Starlette:
        async def verified(request: Request) -> Call | Response:
            raw = await request.body()
            headers = dict(request.headers)
            try:
                doc = Webhook(self.secret).verify(raw, headers)
            except WebhookVerificationError as exc:
                self.rejected.append(request.url.path)
                return JSONResponse({"error": f"bad signature: {exc}"}, status_code=401)
            call = Call(request.url.path, headers, raw, doc)
            self.calls.append(call)
            self.attempts[headers["webhook-id"]] += 1
            return call

        def route(path: str, answer: Any) -> Route:
            async def endpoint(request: Request) -> Response:
                call = await verified(request)
                if isinstance(call, Response):
                    return call
                result: Response = await answer(call)
                return result

            return Route(path, endpoint, methods=["POST"])

        async def ok(call: Call) -> Response:
            return Response(status_code=204)

        async def per_page(call: Call) -> Response:
            # pfn % 3: 0 released, 1 failed with a reason, 2 not mentioned at all.
            pfns = [p["pfn"] for p in call.doc["pages"]]
            return JSONResponse(
                {
                    "released": [p for p in pfns if p % 3 == 0],
                    "failed": [{"pfn": p, "error": "page busy"} for p in pfns if p % 3 == 1],
                }
            )

        async def refuse(call: Call) -> Response:
            return JSONResponse({"error": "pinned by DMA"}, status_code=500)

        async def flaky(call: Call) -> Response:
            if self.attempts[call.headers["webhook-id"]] <= 2:
                return Response("busy", status_code=503, headers={"retry-after": "0"})
            return Response(status_code=204)

        async def busy(call: Call) -> Response:
            return Response("still draining the ring", status_code=503)

        async def storm(call: Call) -> Response:
            return Response("busy", status_code=503, headers={"retry-after": "0"})

        async def later(call: Call) -> Response:
            # Retry-After as an HTTP-date an hour away: past any deadline in these tests.
            when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
            return Response("come back later", status_code=429, headers={"retry-after": when})

        async def slow(call: Call) -> Response:
            await asyncio.wait_for(self.unblock.wait(), 5)
            return Response(status_code=204)

        async def redirect(call: Call) -> Response:
            return RedirectResponse("/ok", status_code=307)

        async def malformed(call: Call) -> Response:
            return Response("[1, 2, 3]", media_type="application/json")

        async def not_json(call: Call) -> Response:
            return Response("all good!", media_type="text/plain")

        def released(call: Call) -> list[int]:
            return [p["pfn"] for p in call.doc["pages"]]

        async def padded(call: Call) -> Response:
            # Releases every page, in an answer megabytes longer than it needs to be.
            return JSONResponse({"released": released(call), "padding": PADDING})

        async def padded_stream(call: Call) -> Response:
            body = json.dumps({"released": released(call), "padding": PADDING}).encode()

            async def pieces() -> AsyncIterator[bytes]:  # chunked: no content-length
                for start in range(0, len(body), 64 << 10):
                    yield body[start : start + (64 << 10)]

            return StreamingResponse(pieces(), media_type="application/json")

        async def longest(call: Call) -> Response:
            # The longest answer a holder has a use for: every page failed, each with an
            # error as long as the part of it that is kept, pretty-printed.
            error = "e" * EXCERPT_CHARS
            failed = [{"pfn": p, "error": error} for p in released(call)]
            return Response(json.dumps({"released": [], "failed": failed}, indent=1))

        async def busy_verbose(call: Call) -> Response:
            if self.attempts[call.headers["webhook-id"]] == 1:
                return Response("<html>" + PADDING + "</html>", status_code=503)
            return Response(status_code=204)

        async def compressed(call: Call) -> Response:
            body = gzip.compress(json.dumps({"released": released(call)}).encode())
            return Response(body, headers={"content-encoding": "gzip"})

        async def over_listed(call: Call) -> Response:
            # Every page sent, and then some: more entries than pages it could answer for.
            return JSONResponse({"released": released(call) + list(range(600))})

        answers = {
            "/over-listed": over_listed,
            "/padded": padded,
            "/padded-stream": padded_stream,
            "/longest": longest,
            "/busy-verbose": busy_verbose,
            "/compressed": compressed,
            "/ok": ok,
            "/per-page": per_page,
            "/refuse": refuse,
            "/flaky": flaky,
            "/busy": busy,
            "/storm": storm,
            "/later": later,
            "/slow": slow,
            "/redirect": redirect,
            "/malformed": malformed,
            "/not-json": not_json,
        }
        return Starlette(routes=[route(path, answer) for path, answer in answers.items()])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rcv = Receiver(SECRET)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    rcv.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        rcv.build(), lifespan="off", ws="none", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "receiver failed to start"
        await asyncio.sleep(0.005)
    try:
        yield rcv
    finally:
        rcv.unblock.set()
        server.should_exit = True
        await asyncio.wait_for(task, 5)
        sock.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:  # no proxy between us and loopback
        yield c


def holder(url: str | None, *, timeout_s: float = 2.0, secret: str = SECRET) -> Holder:
    return Holder("nic0", release_url=url, timeout_s=timeout_s, webhook_secret=secret)


def soon(seconds: float = 5.0) -> float:
    return time.time() + seconds


def reasons(answer: ReleaseAnswer) -> set[FailureReason]:
    return {f.reason for f in answer.failed.values()}


# --- deliveries -----------------------------------------------------------------------


async def test_ok_releases_every_page_with_one_signed_call(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + "/ok"), PAGES, reason="offline", block=32, deadline=soon()
    )
    assert answer == ReleaseAnswer.all_released(PAGES, calls=1)
    assert receiver.paths() == ["/ok"] and receiver.rejected == []
    assert outcomes == ["released"]


async def test_body_has_the_design_shape_and_is_signed_as_sent(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    deadline = soon(7.25)
    await WebhookCaller(client)(
        holder(receiver.base_url + "/ok"), PAGES, reason="release", block=None, deadline=deadline
    )
    (call,) = receiver.calls
    assert call.doc == {
        "type": "page.release",
        "holder": "nic0",
        "reason": "release",
        "block": None,
        "deadline": call.doc["deadline"],
        "pages": [{"pfn": p.pfn, "order": p.order} for p in PAGES],
    }
    stamp = call.doc["deadline"]
    assert stamp.endswith("Z")
    assert abs(datetime.fromisoformat(stamp).timestamp() - deadline) < 0.001
    assert call.raw == json.dumps(call.doc, separators=(",", ":")).encode()  # compact
    assert call.headers["content-type"] == "application/json"
    assert call.headers["webhook-id"].startswith("msg_")
    assert call.headers["webhook-signature"].startswith("v1,")
    assert abs(int(call.headers["webhook-timestamp"]) - time.time()) < 5


async def test_a_wrong_secret_is_rejected_by_the_receiver(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    other = holder(receiver.base_url + "/ok", secret=new_webhook_secret())
    answer = await WebhookCaller(client)(
        other, PAGES, reason="release", block=None, deadline=soon()
    )
    assert receiver.rejected == ["/ok"] and receiver.calls == []
    assert reasons(answer) == {FailureReason.RELEASE_FAILED}
    assert answer.failed[PAGES[0].pfn].detail.startswith("HTTP 401: bad signature")


async def test_per_page_answer_and_pages_in_neither_list_fail(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    pages = [PageRef(pfn, 0) for pfn in range(300, 306)]
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + "/per-page"), pages, reason="offline", block=0, deadline=soon()
    )
    assert answer.released == {300, 303}
    assert answer.failed[301].detail == "page busy"
    assert answer.failed[304].detail == "page busy"
    assert answer.failed[302].detail == "not reported released by the holder"
    assert answer.failed.keys() == {301, 302, 304, 305}
    assert reasons(answer) == {FailureReason.RELEASE_FAILED}
    assert answer.calls == 1 and outcomes == ["partial"]


async def test_a_refusal_fails_every_page_with_the_holders_error(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + "/refuse"),
        PAGES,
        reason="release",
        block=None,
        deadline=soon(),
    )
    assert answer == ReleaseAnswer.all_failed(
        PAGES, FailureReason.RELEASE_FAILED, "HTTP 500: pinned by DMA", calls=1
    )
    assert outcomes == ["failed"]


async def test_temporary_answers_are_retried_as_one_delivery(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    observed: list[tuple[str, float]] = []
    caller = WebhookCaller(client, observe=lambda o, s: observed.append((o, s)))
    answer = await caller(
        holder(receiver.base_url + "/flaky"), PAGES, reason="offline", block=32, deadline=soon()
    )
    assert answer == ReleaseAnswer.all_released(PAGES, calls=3)
    assert receiver.paths() == ["/flaky"] * 3
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 1  # stable id
    assert len({c.raw for c in receiver.calls}) == 1  # same body, re-signed each time
    assert list(receiver.attempts.values()) == [3]
    assert [o for o, _ in observed] == ["temporary", "temporary", "released"]
    assert all(0 <= s < 2 for _, s in observed)


async def test_always_busy_fails_at_the_deadline_quoting_the_last_answer(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(
        client, backoff_base_s=0.01, backoff_max_s=0.05, observe=lambda o, s: outcomes.append(o)
    )
    started = time.monotonic()
    answer = await caller(
        holder(receiver.base_url + "/busy"),
        PAGES,
        reason="offline",
        block=32,
        deadline=soon(0.4),
    )
    assert time.monotonic() - started < 1.0
    assert reasons(answer) == {FailureReason.DEADLINE_EXCEEDED}
    detail = answer.failed[PAGES[0].pfn].detail
    assert "HTTP 503: still draining the ring" in detail
    assert answer.calls >= 3 and answer.calls == len(receiver.calls)
    # the last attempt may be cut short by the deadline itself
    assert outcomes[0] == "temporary" and set(outcomes) <= {"temporary", "timeout"}
    assert len(outcomes) == answer.calls


async def test_retry_after_past_the_deadline_fails_without_waiting(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/later"),
        PAGES,
        reason="offline",
        block=32,
        deadline=soon(3),
    )
    assert time.monotonic() - started < 1.0
    assert reasons(answer) == {FailureReason.DEADLINE_EXCEEDED}
    assert "HTTP 429: come back later" in answer.failed[PAGES[0].pfn].detail
    assert answer.calls == 1


async def test_a_slow_holder_times_out(receiver: Receiver, client: httpx.AsyncClient) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    started = time.monotonic()
    answer = await caller(
        holder(receiver.base_url + "/slow", timeout_s=0.2),
        PAGES,
        reason="release",
        block=None,
        deadline=soon(),
    )
    assert 0.15 < time.monotonic() - started < 1.0
    assert answer == ReleaseAnswer.all_failed(
        PAGES, FailureReason.RELEASE_TIMEOUT, "no answer within 0.2 s", calls=1
    )
    assert outcomes == ["timeout"]


async def test_the_attempt_timeout_never_outlasts_the_deadline(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/slow", timeout_s=10),
        PAGES,
        reason="release",
        block=None,
        deadline=soon(0.3),
    )
    assert time.monotonic() - started < 1.0
    # cut short by the deadline, not by the holder's 10 s timeout
    assert reasons(answer) == {FailureReason.DEADLINE_EXCEEDED}
    assert "while waiting" in answer.failed[PAGES[0].pfn].detail


async def test_redirects_are_not_followed(receiver: Receiver, client: httpx.AsyncClient) -> None:
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/redirect"),
        PAGES,
        reason="release",
        block=None,
        deadline=soon(),
    )
    assert receiver.paths() == ["/redirect"]  # /ok never called
    assert reasons(answer) == {FailureReason.RELEASE_FAILED}
    assert answer.failed[PAGES[0].pfn].detail.startswith("HTTP 307: redirect not followed")


@pytest.mark.parametrize(
    ("path", "why"),
    [("/malformed", "expected an object, got list"), ("/not-json", "not JSON: 'all good!'")],
)
async def test_a_malformed_2xx_fails_every_page(
    receiver: Receiver, client: httpx.AsyncClient, path: str, why: str
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + path), PAGES, reason="release", block=None, deadline=soon()
    )
    assert answer == ReleaseAnswer.all_failed(
        PAGES, FailureReason.RELEASE_FAILED, f"malformed answer: {why}", calls=1
    )
    assert outcomes == ["failed"]


async def test_a_closed_port_is_unreachable(client: httpx.AsyncClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(f"http://127.0.0.1:{port}/release"),
        PAGES,
        reason="release",
        block=None,
        deadline=soon(),
    )
    assert reasons(answer) == {FailureReason.HOLDER_UNREACHABLE}
    assert answer.failed[PAGES[0].pfn].detail.startswith("cannot reach the holder: ")
    assert answer.calls == 1 and outcomes == ["unreachable"]


async def test_pages_are_sent_in_chunks(receiver: Receiver, client: httpx.AsyncClient) -> None:
    pages = [PageRef(pfn, 0) for pfn in range(10_000)]
    answer = await WebhookCaller(client, chunk_size=4096)(
        holder(receiver.base_url + "/ok"), pages, reason="offline", block=0, deadline=soon()
    )
    assert answer == ReleaseAnswer.all_released(pages, calls=3)
    assert [len(c.doc["pages"]) for c in receiver.calls] == [4096, 4096, 1808]
    assert [c.doc["pages"][0]["pfn"] for c in receiver.calls] == [0, 4096, 8192]
    assert len({c.headers["webhook-id"] for c in receiver.calls}) == 3  # one per delivery


async def test_no_request_without_a_handler_or_after_the_deadline(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    caller = WebhookCaller(client)
    answer = await caller(holder(None), PAGES, reason="offline", block=1, deadline=soon())
    assert answer == ReleaseAnswer.all_failed(
        PAGES, FailureReason.NO_RELEASE_HANDLER, "holder has no release handler", calls=0
    )
    late = await caller(
        holder(receiver.base_url + "/ok"),
        PAGES,
        reason="offline",
        block=1,
        deadline=time.time() - 1,
    )
    assert reasons(late) == {FailureReason.DEADLINE_EXCEEDED} and late.calls == 0
    no_secret = await caller(
        holder(receiver.base_url + "/ok", secret=""),
        PAGES,
        reason="offline",
        block=1,
        deadline=soon(),
    )
    assert reasons(no_secret) == {FailureReason.RELEASE_FAILED} and no_secret.calls == 0
    assert receiver.calls == [] and receiver.rejected == []


def test_new_webhook_secrets_are_fresh_and_usable() -> None:
    a, b = new_webhook_secret(), new_webhook_secret()
    assert a != b and a.startswith("whsec_") and len(a) == len("whsec_") + 32
    Webhook(a)  # the package accepts it


# --- retries stay polite ----------------------------------------------------------------


async def test_retry_after_zero_storm_is_bounded_by_the_minimum_interval(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    # A holder answering "503, Retry-After: 0" forever. With the default settings the
    # waits are at least 0.05, 0.1, 0.2, 0.4, 0.8 s: at most 6 calls in 1.5 s (before the
    # minimum interval it made hundreds).
    caller = WebhookCaller(client)
    started = time.monotonic()
    answer = await caller(
        holder(receiver.base_url + "/storm"), PAGES, reason="offline", block=1, deadline=soon(1.5)
    )
    assert time.monotonic() - started < 3.0
    assert reasons(answer) == {FailureReason.DEADLINE_EXCEEDED}
    assert 2 <= len(receiver.calls) <= 6, len(receiver.calls)
    assert answer.calls == len(receiver.calls)


async def test_retries_wait_at_least_the_minimum_interval_with_jitter(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    stamps: list[float] = []
    caller = WebhookCaller(
        client,
        backoff_base_s=0.1,
        backoff_max_s=0.1,
        max_calls=6,
        observe=lambda o, s: stamps.append(time.monotonic()),
    )
    await caller(
        holder(receiver.base_url + "/storm"), PAGES, reason="offline", block=1, deadline=soon(10)
    )
    assert len(stamps) == 6
    # each observation is one attempt's end; the next attempt starts >= 0.1 s later
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(gap >= 0.1 for gap in gaps), gaps
    assert all(gap < 0.1 * 1.5 + 0.5 for gap in gaps), gaps
    assert len({round(gap, 4) for gap in gaps}) > 1, gaps  # jittered, not in lockstep


async def test_a_delivery_makes_at_most_max_calls_attempts(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(
        client, backoff_base_s=0.01, max_calls=3, observe=lambda o, s: outcomes.append(o)
    )
    started = time.monotonic()
    answer = await caller(
        holder(receiver.base_url + "/storm"), PAGES, reason="offline", block=1, deadline=soon(30)
    )
    assert time.monotonic() - started < 2.0  # long before the deadline
    assert answer == ReleaseAnswer.all_failed(
        PAGES,
        FailureReason.RELEASE_FAILED,
        "gave up after 3 attempts; last answer HTTP 503: busy",
        calls=3,
    )
    assert len(receiver.calls) == 3 and outcomes == ["temporary"] * 3


async def test_retry_settings_are_checked(client: httpx.AsyncClient) -> None:
    with pytest.raises(pydantic.ValidationError, match="webhook_retry_min_s"):
        Settings(webhook_retry_min_s=3, webhook_retry_max_s=2)
    defaults = Settings()
    assert defaults.webhook_max_calls == DEFAULT_MAX_CALLS
    assert defaults.webhook_retry_min_s == DEFAULT_RETRY_MIN_S
    assert defaults.webhook_retry_max_s == DEFAULT_RETRY_MAX_S
    with pytest.raises(ValueError, match="max_calls"):
        WebhookCaller(client, max_calls=0)
    with pytest.raises(ValueError, match="backoff_base_s"):
        WebhookCaller(client, backoff_base_s=0)
    with pytest.raises(ValueError, match="backoff_base_s"):
        WebhookCaller(client, backoff_base_s=3, backoff_max_s=2)


# --- the size of an answer (a holder's answer is hostile input) ---------------------------


@pytest.mark.parametrize("path", ["/padded", "/padded-stream"])
async def test_an_answer_longer_than_its_pages_need_fails_every_page(
    receiver: Receiver, client: httpx.AsyncClient, path: str
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + path), PAGES, reason="offline", block=0, deadline=soon()
    )
    limit = answer_limit(len(PAGES))
    assert limit < len(PADDING)
    assert answer == ReleaseAnswer.all_failed(
        PAGES,
        FailureReason.RELEASE_FAILED,
        f"answer too large: more than {limit} bytes for 3 page(s) (at most 16384 + 256 per page)",
    )
    assert outcomes == ["failed"]


async def test_an_answer_listing_more_pages_than_were_sent_fails_every_page(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/over-listed"),
        PAGES,
        reason="offline",
        block=0,
        deadline=soon(),
    )
    covered = 1 + 512 + 1  # PAGES: orders 0, 9 and 0
    assert answer == ReleaseAnswer.all_failed(
        PAGES,
        FailureReason.RELEASE_FAILED,
        f"malformed answer: 603 entries in 'released' for {covered} page(s) sent",
    )


async def test_the_longest_useful_answer_is_read(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    pages = [PageRef((1 << 52) + pfn, 0) for pfn in range(4096)]  # 16-digit pfns
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/longest"), pages, reason="offline", block=0, deadline=soon()
    )
    assert answer.failed.keys() == {p.pfn for p in pages} and answer.calls == 1
    assert {f.detail for f in answer.failed.values()} == {"e" * EXCERPT_CHARS}
    assert len(receiver.calls) == 1


async def test_a_verbose_temporary_answer_is_still_retried(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    outcomes: list[str] = []
    caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
    answer = await caller(
        holder(receiver.base_url + "/busy-verbose"),
        PAGES,
        reason="offline",
        block=0,
        deadline=soon(),
    )
    assert answer == ReleaseAnswer.all_released(PAGES, calls=2)
    assert outcomes == ["temporary", "released"]


async def test_a_compressed_answer_is_not_inflated(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    answer = await WebhookCaller(client)(
        holder(receiver.base_url + "/compressed"),
        PAGES,
        reason="offline",
        block=0,
        deadline=soon(),
    )
    assert receiver.calls[0].headers["accept-encoding"] == "identity"
    assert answer == ReleaseAnswer.all_failed(
        PAGES,
        FailureReason.RELEASE_FAILED,
        "malformed answer: content-encoding 'gzip' (asked for identity)",
    )


async def test_a_padded_release_answer_leaves_the_hold_held(
    receiver: Receiver, client: httpx.AsyncClient
) -> None:
    registry = Registry(MemoryLayout.default(), WebhookCaller(client))
    await registry.add_holder(
        "nic0", release_url=receiver.base_url + "/padded", timeout_s=2.0, webhook_secret=SECRET
    )
    pfn = 1 << 20
    await registry.set_hold(pfn, "nic0")
    with pytest.raises(errors.ReleaseFailed) as failed:
        await registry.release(pfn)
    assert "answer too large" in failed.value.detail
    hold = (await registry.lookup(pfn)).hold
    assert hold is not None and hold.state is HoldState.HELD
    last_error = registry.holder("nic0").last_error
    assert last_error is not None and last_error.startswith("answer too large: ")
