"""The SDK keeps a holder's lease alive: the schedule alone, then the sync and async
clients and the ReleaseReceiver running it against the app or a scripted transport."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pageholder.client import (
    AsyncPageHolderClient,
    ConnectError,
    KeepaliveFailure,
    NoLease,
    PageHolderClient,
    ReleaseReceiver,
    serve_receiver,
)
from pageholder.client._keepalive import NO_LEASE_RECHECK_S, RETRY_MIN_S, KeepaliveSchedule
from pageholder.client._models import Lease, parse
from tests.client.test_client import NO_RETRY, URL, Registry, running

LEASE = {"state": "live", "expires_at": "2026-11-26T15:00:10Z", "ttl_s": 3.0}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_schedule_keeps_a_third_of_the_ttl_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[KeepaliveFailure] = []
    schedule = KeepaliveSchedule("nic0", seen.append)
    lease = parse(Lease, LEASE)
    assert schedule.succeeded(lease) == pytest.approx(1.0)
    with caplog.at_level(logging.INFO, logger="pageholder.client"):
        delays = [schedule.failed(ConnectError("refused")) for _ in range(4)]
        assert delays == [RETRY_MIN_S, 2 * RETRY_MIN_S, 4 * RETRY_MIN_S, 1.0]  # capped
        assert [f.failures for f in seen] == [1, 2, 3, 4]
        assert seen[0].holder == "nic0" and seen[0].expires_at == lease.expires_at
        assert "keepalive for holder 'nic0' failed (1 in a row)" in caplog.text
        assert schedule.succeeded(lease) == pytest.approx(1.0)
        assert "got through again after 4 failure(s)" in caplog.text
    assert schedule.failed(NoLease(409, {"code": "no_lease"})) == NO_LEASE_RECHECK_S
    assert len(seen) == 4  # no lease is not a failure


def test_a_failing_callback_does_not_stop_the_schedule() -> None:
    def broken(failure: KeepaliveFailure) -> None:
        raise RuntimeError("bug in the subsystem's callback")

    schedule = KeepaliveSchedule("nic0", broken)
    assert schedule.failed(ConnectError("refused")) == RETRY_MIN_S


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


async def await_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Flaky:
    """A transport handler: keepalives fail with a connection error while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.keepalives = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/holders/nic0/keepalive"
        with self.lock:
            self.keepalives += 1
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=json.dumps(LEASE))


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async for started in running():
        yield started


async def test_an_async_client_opened_for_a_holder_keeps_its_lease_alive(
    registry: Registry,
) -> None:
    created = await registry.admin.create_holder("nic0", "http://h.test/ok", lease_ttl_s=1)
    core = registry.app.state.service.registry
    async with AsyncPageHolderClient(
        URL, created.token, retry=NO_RETRY, transport=registry.transport, holder="nic0"
    ) as nic0:
        started = time.monotonic()
        await await_for(lambda: time.monotonic() - started > 2.0, timeout=3)  # two TTLs
        assert (await nic0.get_holder("nic0")).lease.state == "live"  # type: ignore[union-attr]
        assert core.leases.stats.expirations == 0
        assert nic0._keepalives[0].schedule.sent >= 5
    # closed: nobody keeps it alive any more, and it runs out
    await await_for(lambda: core.holder("nic0").expired, timeout=3)


async def test_keepalives_survive_a_registry_restart() -> None:
    flaky = Flaky()
    failures: list[KeepaliveFailure] = []
    async with AsyncPageHolderClient(
        URL,
        "t",
        transport=httpx.MockTransport(flaky),
        holder="nic0",
        on_keepalive_failure=failures.append,
    ) as client:
        await await_for(lambda: flaky.keepalives >= 1)
        flaky.down = True  # the registry restarts
        await await_for(lambda: len(failures) >= 2)
        flaky.down = False
        schedule = client._keepalives[0].schedule
        await await_for(lambda: schedule.failures == 0)
        assert failures[0].failures == 1 and isinstance(failures[0].error, ConnectError)
    count = flaky.keepalives
    await asyncio.sleep(RETRY_MIN_S * 2)  # longer than a retry: nothing more was sent
    assert flaky.keepalives == count


def test_the_sync_client_keeps_it_alive_in_a_thread() -> None:
    flaky = Flaky()
    flaky.down = True
    failures: list[KeepaliveFailure] = []
    with PageHolderClient(
        URL,
        "t",
        transport=httpx.MockTransport(flaky),
        holder="nic0",
        on_keepalive_failure=failures.append,
    ) as client:
        wait_for(lambda: len(failures) >= 1)
        flaky.down = False
        wait_for(lambda: client._keepalives[0].schedule.sent >= 1)
        thread = client._keepalives[0]._thread
    assert not thread.is_alive()


async def test_a_release_receiver_keeps_its_holder_alive_while_served() -> None:
    flaky = Flaky()
    with pytest.raises(ValueError):
        ReleaseReceiver(SECRET, lambda request: None, holder="nic0")
    async with AsyncPageHolderClient(URL, "t", transport=httpx.MockTransport(flaky)) as client:
        receiver = ReleaseReceiver(SECRET, lambda request: None, registry=client, holder="nic0")
        running = await serve_receiver(receiver)
        await await_for(lambda: flaky.keepalives >= 1)
        await running.close()
        count = flaky.keepalives
        await asyncio.sleep(1.2)  # more than the 1 s interval: nothing more was sent
        assert flaky.keepalives == count
