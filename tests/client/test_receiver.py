"""``ReleaseReceiver``: the holder's side of the release webhook.

Requests are signed here exactly as the registry signs them (``Webhook(secret).sign``
over the body, a fresh ``webhook-timestamp`` per attempt, one ``webhook-id`` per
delivery) and sent in-process through ``httpx.ASGITransport``. A ``Holder`` callback
records what it was handed and answers whatever the test scripted. The last tests serve
the receiver mounted in FastAPI and alone on a real loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from pageholder.client import (
    Page,
    ReleaseReceiver,
    ReleaseRequest,
    ReleaseResult,
    serve_receiver,
)

SECRET = "whsec_" + base64.b64encode(b"pageholder receiver test key!!!!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's key, not ours!!!").decode()
PAGES = [{"pfn": 557056, "order": 0}, {"pfn": 557568, "order": 9}]


def payload(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "type": "page.release",
        "holder": "nic0",
        "reason": "offline",
        "block": 17,
        "deadline": "2026-11-26T15:00:00.000Z",
        "pages": PAGES,
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def signed(
    body: bytes, msg_id: str | None = None, *, at: float | None = None, secret: str = SECRET
) -> dict[str, str]:
    """Headers for one attempt, as the registry makes them."""
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    now = time.time() if at is None else at
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": Webhook(secret).sign(
            msg_id, datetime.fromtimestamp(now, UTC), body.decode()
        ),
    }


class Holder:
    """An ``on_release`` callback: records requests, answers from a script (then None)."""

    def __init__(self, *answers: ReleaseResult | None | BaseException) -> None:
        self.answers = list(answers)
        self.got: list[ReleaseRequest] = []

    def __call__(self, request: ReleaseRequest) -> ReleaseResult | None:
        self.got.append(request)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, BaseException):
            raise answer
        return answer


class AsyncHolder(Holder):
    async def __call__(self, request: ReleaseRequest) -> ReleaseResult | None:  # type: ignore[override]
        await asyncio.sleep(0)
        return super().__call__(request)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://holder")


@pytest.fixture
def holder() -> Holder:
    return Holder()


@pytest.fixture
async def client(holder: Holder) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ReleaseReceiver(SECRET, holder)) as c:
        yield c


async def post(client: httpx.AsyncClient, body: bytes, msg_id: str | None = None) -> httpx.Response:
    return await client.post("/", content=body, headers=signed(body, msg_id))


# --- signatures --------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Holder, AsyncHolder])
async def test_a_signed_call_reaches_the_callback_and_gets_204(kind: type[Holder]) -> None:
    holder = kind()
    receiver = ReleaseReceiver(SECRET, holder)
    body = payload()
    async with client_for(receiver) as client:
        response = await post(client, body, "msg_1")
    assert response.status_code == 204
    assert response.content == b""
    assert (
        holder.got
        == receiver.calls
        == [
            ReleaseRequest(
                holder="nic0",
                reason="offline",
                block=17,
                deadline=datetime(2026, 11, 26, 15, 0, tzinfo=UTC),
                pages=(Page(557056, 0), Page(557568, 9)),
                webhook_id="msg_1",
            )
        ]
    )


async def test_a_tampered_body_is_401(client: httpx.AsyncClient, holder: Holder) -> None:
    headers = signed(payload())
    response = await client.post("/", content=payload(block=18), headers=headers)
    assert response.status_code == 401
    assert "signature" in response.json()["error"]
    assert holder.got == []


async def test_another_secret_is_401(client: httpx.AsyncClient, holder: Holder) -> None:
    body = payload()
    response = await client.post("/", content=body, headers=signed(body, secret=OTHER_SECRET))
    assert response.status_code == 401
    assert holder.got == []


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_missing_header_is_401(
    client: httpx.AsyncClient, holder: Holder, missing: str
) -> None:
    body = payload()
    headers = signed(body)
    del headers[missing]
    response = await client.post("/", content=body, headers=headers)
    assert response.status_code == 401
    assert holder.got == []


async def test_a_malformed_signature_header_is_401(client: httpx.AsyncClient) -> None:
    body = payload()
    headers = signed(body) | {"webhook-signature": "v1,not base64!"}
    response = await client.post("/", content=body, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("skew", [-40.0, 40.0])
async def test_a_timestamp_out_of_tolerance_is_401(skew: float) -> None:
    """Signed now, but the receiver's clock is 40 s away and its tolerance 30 s (the
    library's own 5-minute check, on the real clock, passes)."""
    holder = Holder()
    body = payload()

    def clock() -> float:
        return time.time() - skew

    async with client_for(ReleaseReceiver(SECRET, holder, tolerance_s=30, clock=clock)) as client:
        response = await post(client, body)
    assert response.status_code == 401
    assert "tolerance" in response.json()["error"]
    # With a tolerance of a minute, the same clock is close enough.
    async with client_for(ReleaseReceiver(SECRET, holder, tolerance_s=60, clock=clock)) as client:
        assert (await post(client, body)).status_code == 204
    assert len(holder.got) == 1


# --- replays and retries -----------------------------------------------------------


async def test_a_replayed_id_is_400_and_not_processed_again(
    client: httpx.AsyncClient, holder: Holder
) -> None:
    body = payload()
    assert (await post(client, body, "msg_once")).status_code == 204
    # Freshly signed (new timestamp), same id: a replay of a finished delivery.
    response = await post(client, body, "msg_once")
    assert response.status_code == 400
    assert response.json() == {"error": "replayed webhook-id"}
    assert len(holder.got) == 1


async def test_a_retry_after_later_is_processed() -> None:
    holder = Holder(ReleaseResult.later(1.2), None)
    body = payload()
    async with client_for(ReleaseReceiver(SECRET, holder)) as client:
        first = await post(client, body, "msg_retry")
        assert first.status_code == 503
        assert first.headers["retry-after"] == "2"
        assert (await post(client, body, "msg_retry")).status_code == 204
        # Now it got a final answer: one more is a replay.
        assert (await post(client, body, "msg_retry")).status_code == 400
    assert [r.webhook_id for r in holder.got] == ["msg_retry", "msg_retry"]


async def test_a_final_refusal_is_remembered_too() -> None:
    holder = Holder(ReleaseResult.refuse("device busy for good", 422))
    body = payload()
    async with client_for(ReleaseReceiver(SECRET, holder)) as client:
        assert (await post(client, body, "msg_r")).status_code == 422
        assert (await post(client, body, "msg_r")).status_code == 400
    assert len(holder.got) == 1


async def test_a_duplicate_while_processing_is_temporary() -> None:
    entered, leave = asyncio.Event(), asyncio.Event()

    async def slow(request: ReleaseRequest) -> None:
        entered.set()
        await leave.wait()

    body = payload()
    async with client_for(ReleaseReceiver(SECRET, slow)) as client:
        first = asyncio.create_task(post(client, body, "msg_dup"))
        await entered.wait()
        second = await post(client, body, "msg_dup")
        leave.set()
        assert (await first).status_code == 204
    assert second.status_code == 409
    assert second.headers["retry-after"] == "1"


async def test_the_replay_window_is_bounded() -> None:
    receiver = ReleaseReceiver(SECRET, Holder(), replay_window=2)
    body = payload()
    async with client_for(receiver) as client:
        for msg_id in ["msg_a", "msg_b", "msg_c"]:
            assert (await post(client, body, msg_id)).status_code == 204
        assert (await post(client, body, "msg_c")).status_code == 400
        # msg_a fell out of the window of 2.
        assert (await post(client, body, "msg_a")).status_code == 204


# --- answers -----------------------------------------------------------------------


async def test_a_partial_result_is_200_with_released_and_failed() -> None:
    result = ReleaseResult.partial([557056], {557568: "page pinned by DMA"})
    async with client_for(ReleaseReceiver(SECRET, Holder(result))) as client:
        response = await post(client, payload())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "released": [557056],
        "failed": [{"pfn": 557568, "error": "page pinned by DMA"}],
    }


@pytest.mark.parametrize(
    ("result", "status", "retry_after"),
    [
        (ReleaseResult.later(), 503, "1"),
        (ReleaseResult.later(0), 503, "0"),
        (ReleaseResult.later(0.2, 429), 429, "1"),
        (ReleaseResult.later(3, 423), 423, "3"),
    ],
)
async def test_later_is_temporary_with_retry_after(
    result: ReleaseResult, status: int, retry_after: str
) -> None:
    async with client_for(ReleaseReceiver(SECRET, Holder(result))) as client:
        response = await post(client, payload())
    assert response.status_code == status
    assert response.headers["retry-after"] == retry_after
    assert result.temporary


@pytest.mark.parametrize("status", [500, 422, 404])
async def test_refuse_gives_its_status_and_error(status: int) -> None:
    result = ReleaseResult.refuse("no such pages here", status)
    async with client_for(ReleaseReceiver(SECRET, Holder(result))) as client:
        response = await post(client, payload())
    assert response.status_code == status
    assert response.json() == {"error": "no such pages here"}


async def test_all_is_204() -> None:
    async with client_for(ReleaseReceiver(SECRET, Holder(ReleaseResult.all()))) as client:
        response = await post(client, payload())
    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.parametrize("kind", [Holder, AsyncHolder])
async def test_a_callback_exception_is_500(kind: type[Holder]) -> None:
    holder = kind(RuntimeError("pages are pinned"))
    async with client_for(ReleaseReceiver(SECRET, holder)) as client:
        response = await post(client, payload())
    assert response.status_code == 500
    assert response.json() == {"error": "RuntimeError: pages are pinned"}


async def test_a_callback_returning_something_else_is_500() -> None:
    async with client_for(ReleaseReceiver(SECRET, lambda request: "done")) as client:  # type: ignore[arg-type, return-value]
        response = await post(client, payload())
    assert response.status_code == 500
    assert response.json()["error"].startswith("TypeError: on_release returned str")


def test_results_are_checked_when_built() -> None:
    with pytest.raises(ValueError):
        ReleaseResult.later(status=500)
    with pytest.raises(ValueError):
        ReleaseResult.later(-1)
    with pytest.raises(ValueError):
        ReleaseResult.refuse("busy", 503)
    with pytest.raises(ValueError):
        ReleaseResult.refuse("fine", 200)
    with pytest.raises(ValueError):
        ReleaseResult.partial([1], {1: "both"})
    with pytest.raises(ValueError):
        ReleaseResult.partial([-1], {})


# --- what is not a release call ----------------------------------------------------


async def test_get_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        payload(type="page.hold"),
        payload(holder=None),
        payload(block=-1),
        payload(block=True),
        payload(deadline="tomorrow"),
        payload(deadline="2026-11-26T15:00:00"),
        payload(pages={"pfn": 1, "order": 0}),
        payload(pages=[{"pfn": 1}]),
        payload(pages=[{"pfn": True, "order": 0}]),
    ],
    ids=lambda body: body.decode()[:40],
)
async def test_a_malformed_payload_is_400(
    client: httpx.AsyncClient, holder: Holder, body: bytes
) -> None:
    response = await post(client, body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert holder.got == []


async def test_a_body_over_16_mib_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/", content=b" " * ((16 << 20) + 1))
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted while read
        for _ in range(17):
            yield b" " * (1 << 20)

    response = await client.post("/", content=chunks())
    assert response.status_code == 413


async def test_calls_keeps_the_last_1000() -> None:
    receiver = ReleaseReceiver(SECRET, Holder())
    old = ReleaseRequest("nic0", "release", None, datetime.now(UTC), (), "msg_old")
    receiver.calls.extend([old] * 1000)
    async with client_for(receiver) as client:
        await post(client, payload(), "msg_new")
    assert len(receiver.calls) == 1000
    assert receiver.calls[-1].webhook_id == "msg_new"


# --- serving -----------------------------------------------------------------------


async def test_mounted_in_fastapi_under_release() -> None:
    holder = Holder()
    app = FastAPI()
    app.mount("/release", ReleaseReceiver(SECRET, holder))
    body = payload()
    async with client_for(app) as client:
        response = await client.post("/release/", content=body, headers=signed(body))
    assert response.status_code == 204
    assert len(holder.got) == 1


async def test_served_alone_on_loopback() -> None:
    holder = AsyncHolder()
    running = await serve_receiver(ReleaseReceiver(SECRET, holder))
    async with running:
        assert running.port > 0
        assert running.url == f"http://127.0.0.1:{running.port}/"
        body = payload()
        async with httpx.AsyncClient() as client:
            response = await client.post(running.url, content=body, headers=signed(body))
            assert response.status_code == 204
    assert [r.pages for r in holder.got] == [(Page(557056, 0), Page(557568, 9))]
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.post(running.url, content=body)


async def test_lifespan_is_answered() -> None:
    """Served by a server with lifespan on, the receiver says it started and stopped."""
    inbox: list[MutableMapping[str, Any]] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return inbox.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await ReleaseReceiver(SECRET, Holder())({"type": "lifespan"}, receive, send)
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
