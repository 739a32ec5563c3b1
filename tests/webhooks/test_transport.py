"""SSRF through the release URL, tried against the real caller and a real receiver.

The receiver on 127.0.0.1 plays a metadata service: whatever reaches it is answered with
a secret. Each test says which spelling of a forbidden target the attacker used; the
caller runs with loopback disallowed (loopback stands in for the metadata address, which
a test cannot listen on), and must neither connect nor quote the secret.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pageholder.service.core.model import FailureReason, Holder, PageRef, ReleaseAnswer
from pageholder.service.webhooks.addresses import AddressPolicy
from pageholder.service.webhooks.caller import WebhookCaller, new_webhook_secret
from pageholder.service.webhooks.transport import CheckedTransport

SECRET = new_webhook_secret()
PAGES = [PageRef(1 << 20, 0)]
METADATA = "AKIA-SECRET-ACCESS-KEY-FROM-THE-METADATA-SERVICE"
NO_LOOPBACK = AddressPolicy(allow_loopback=False, allow_private=False)


@dataclass
class Receiver:
    port: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def build(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            self.calls.append((request.url.path, request.headers["host"]))
            return Response(METADATA, status_code=500)

        async def ok(request: Request) -> Response:
            self.calls.append((request.url.path, request.headers["host"]))
            # a new connection for every call, so that every call resolves and checks again
            return Response(status_code=204, headers={"connection": "close"})

        return Starlette(
            routes=[
                Route("/latest/meta-data/", metadata, methods=["POST"]),
                Route("/ok", ok, methods=["POST"]),
            ]
        )


async def serve(receiver: Receiver, **tls: str) -> AsyncIterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver.port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver.build(), lifespan="off", ws="none", log_level="warning", access_log=False, **tls
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 5
    while not server.started:
        assert not task.done(), "receiver failed to start"
        assert time.monotonic() < deadline, "receiver did not start in 5 s"
        await asyncio.sleep(0.005)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
        sock.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for started in serve(Receiver()):
        yield started


def in_5s() -> float:
    return time.time() + 5


def holder(url: str) -> Holder:
    return Holder("evil", release_url=url, timeout_s=2.0, webhook_secret=SECRET)


async def release(
    url: str, policy: AddressPolicy, resolver: Resolver | None = None
) -> tuple[ReleaseAnswer, list[str]]:
    outcomes: list[str] = []
    more = {} if resolver is None else {"resolver": resolver}
    async with httpx.AsyncClient(transport=CheckedTransport(policy, **more)) as client:
        caller = WebhookCaller(client, observe=lambda o, s: outcomes.append(o))
        answer = await caller(
            holder(url), PAGES, reason="release", block=None, deadline=time.time() + 5
        )
    return answer, outcomes


def assert_refused(answer: ReleaseAnswer, outcomes: list[str], *fragments: str) -> str:
    (failure,) = answer.failed.values()
    assert failure.reason is FailureReason.HOLDER_UNREACHABLE
    assert failure.detail.startswith("address not allowed: "), failure.detail
    for fragment in fragments:
        assert fragment in failure.detail, failure.detail
    assert METADATA not in failure.detail
    assert outcomes == ["refused"] and answer.calls == 1
    return failure.detail


class Resolver:
    """A DNS of our own: ``answers[host]`` is popped front to back, the last one stays."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


# --- a name that resolves to a forbidden address ---------------------------------------


async def test_ssrf_by_a_name_resolving_to_loopback_is_refused_at_connect(
    receiver: Receiver,
) -> None:
    # localhost resolves to 127.0.0.1 and ::1: the name passed registration, its addresses
    # do not pass the connection.
    answer, outcomes = await release(
        f"http://localhost:{receiver.port}/latest/meta-data/", NO_LOOPBACK
    )
    assert_refused(answer, outcomes, "is loopback, which is not allowed here", "(host localhost)")
    assert receiver.calls == []


async def test_the_same_name_is_called_when_loopback_is_allowed(receiver: Receiver) -> None:
    # The control for the test above: the refusal is the policy's, not a broken name.
    answer, outcomes = await release(f"http://localhost:{receiver.port}/ok", AddressPolicy())
    assert answer == ReleaseAnswer.all_released(PAGES, calls=1) and outcomes == ["released"]
    assert receiver.calls == [("/ok", f"localhost:{receiver.port}")]


@pytest.mark.parametrize(
    "host",
    [
        "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stops
        "127\u30020\u30020\u30021",  # ideographic full stops
        "127\uff610\uff610\uff611",  # halfwidth ideographic full stops
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[2002:7f00:1::]",
    ],
)
async def test_ssrf_by_other_spellings_already_stored_is_refused_at_connect(
    receiver: Receiver, host: str
) -> None:
    # A URL stored before registration refused these spellings is still never called.
    answer, outcomes = await release(
        f"http://{host}:{receiver.port}/latest/meta-data/", NO_LOOPBACK
    )
    assert_refused(answer, outcomes)
    assert receiver.calls == []


async def test_ssrf_by_a_name_with_one_forbidden_address_among_good_ones(
    receiver: Receiver,
) -> None:
    resolver = Resolver({"holder.test": [["93.184.216.34", "169.254.169.254"]]})
    answer, outcomes = await release(
        f"http://holder.test:{receiver.port}/latest/meta-data/", AddressPolicy(), resolver
    )
    assert_refused(answer, outcomes, "169.254.169.254 is link-local", "(host holder.test)")


async def test_ssrf_by_dns_rebinding_after_registration_is_refused(receiver: Receiver) -> None:
    # The name pointed at an allowed address when it was checked and called first; then
    # its owner re-points it. Every new connection resolves and checks again, and goes
    # to the checked address (the system resolver does not know holder.test at all).
    resolver = Resolver({"holder.test": [["127.0.0.1"], ["169.254.169.254"]]})
    policy = AddressPolicy(allow_loopback=True)
    url = f"http://holder.test:{receiver.port}/ok"
    async with httpx.AsyncClient(transport=CheckedTransport(policy, resolver=resolver)) as client:
        caller = WebhookCaller(client)
        first = await caller(holder(url), PAGES, reason="release", block=None, deadline=in_5s())
        second = await caller(holder(url), PAGES, reason="release", block=None, deadline=in_5s())
    assert first == ReleaseAnswer.all_released(PAGES, calls=1)
    assert receiver.calls == [("/ok", f"holder.test:{receiver.port}")]  # Host: the name
    (failure,) = second.failed.values()
    assert failure.reason is FailureReason.HOLDER_UNREACHABLE
    assert "169.254.169.254 is link-local" in failure.detail
    assert resolver.asked == ["holder.test", "holder.test"]


# --- TLS keeps the name --------------------------------------------------------------


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "1",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


@pytest.mark.parametrize(("cert_name", "released"), [("holder.test", True), ("other.test", False)])
async def test_tls_is_verified_for_the_name_not_the_checked_address(
    tmp_path: Path, cert_name: str, released: bool
) -> None:
    key, cert = make_certificate(tmp_path, cert_name)
    trusted = ssl.create_default_context(cafile=str(cert))
    resolver = Resolver({"holder.test": [["127.0.0.1"]]})
    async for rcv in serve(Receiver(), ssl_keyfile=str(key), ssl_certfile=str(cert)):
        transport = CheckedTransport(AddressPolicy(), resolver=resolver, verify=trusted)
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await WebhookCaller(client)(
                holder(f"https://holder.test:{rcv.port}/ok"),
                PAGES,
                reason="release",
                block=None,
                deadline=time.time() + 5,
            )
        if released:  # SNI and the certificate check used holder.test, not 127.0.0.1
            assert answer == ReleaseAnswer.all_released(PAGES, calls=1)
            assert rcv.calls == [("/ok", f"holder.test:{rcv.port}")]
        else:
            (failure,) = answer.failed.values()
            assert failure.reason is FailureReason.HOLDER_UNREACHABLE
            assert "certificate" in failure.detail.lower()
            assert rcv.calls == []
