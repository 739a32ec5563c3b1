"""A real ``pageholder serve`` process, used the way a person and their subsystems would.

One server (``--data-dir :memory:``, admin token from the environment) is shared by the
module; each test keeps to its own holders and its own memory block. Release handlers
are real ``ReleaseReceiver``s served on loopback in the test's event loop: they only
hand a call to the callback once its Standard Webhooks signature checks out with the
secret the registry returned when the holder was registered.
"""

from __future__ import annotations

import asyncio
import re
import signal
import stat
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pageholder.client import Page, ReleaseReceiver, ReleaseRequest, ReleaseResult, serve_receiver

from .conftest import BLOCK_PAGES, NORMAL, Behaviour, cooperative
from .servers import Server, free_port, run_pageholder, running_server

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "serve-test-admin-token-0123456789"
OTHER_SECRET = "whsec_c29tZWJvZHkgZWxzZSdzIGtleSwgbm90IG91cnMhISE="


def first_pfn(block: int) -> int:
    """Blocks 32-127 are the Normal zone of the default layout (NORMAL = block 32)."""
    return block * BLOCK_PAGES


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve"), admin_token=ADMIN_TOKEN) as running:
        yield running


@dataclass
class Live:
    """The admin's client of the shared server, and the receivers a test started."""

    server: Server
    admin: httpx.AsyncClient
    stack: AsyncExitStack

    async def holder(
        self,
        name: str,
        on_release: Behaviour | None = cooperative,
        *,
        timeout_s: float = 5.0,
        secret: str | None = None,
    ) -> ReleaseReceiver | None:
        """Register ``name``; unless ``on_release`` is None, serve it a receiver checking
        signatures with the secret from registration (or ``secret``) and point the
        holder's release_url at it."""
        created = await self.admin.post("/v1/holders", json={"name": name, "timeout_s": timeout_s})
        assert created.status_code == 201, created.text
        if on_release is None:
            return None
        receiver = ReleaseReceiver(secret or str(created.json()["webhook_secret"]), on_release)
        running = await serve_receiver(receiver)
        self.stack.push_async_callback(running.close)
        patched = await self.admin.patch(f"/v1/holders/{name}", json={"release_url": running.url})
        assert patched.status_code == 200, patched.text
        assert patched.json()["release_url"] == running.url
        return receiver

    async def hold(self, name: str, pfn: int, order: int = 0) -> None:
        response = await self.admin.put(
            f"/v1/pages/{pfn}/hold", json={"holder": name, "order": order}
        )
        assert response.status_code == 201, response.text
        assert response.json()["result"] == "created"

    async def release(self, pfn: int, **kwargs: Any) -> httpx.Response:
        return await self.admin.post(f"/v1/pages/{pfn}/release", **kwargs)

    async def page(self, pfn: int) -> dict[str, Any]:
        response = await self.admin.get(f"/v1/pages/{pfn}")
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page


@pytest.fixture
async def live(server: Server) -> AsyncIterator[Live]:
    async with AsyncExitStack() as stack:
        admin = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=server.url,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                trust_env=False,
                timeout=30,
            )
        )
        yield Live(server, admin, stack)
    print(server.output())  # pytest shows it only if the test failed


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


# --- starting and stopping it --------------------------------------------------------


def test_the_first_start_prints_where_it_is_and_a_token_kept_in_the_data_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path / "first", data_dir=str(data)) as first:
        printed = first.stdout()
        assert f"pageholder serving on {first.url}" in printed
        assert f"{first.url}/docs" in printed
        found = re.search(r"admin token.*:\n\s+(pha_\S+)\n", printed)
        assert found, printed
        token = found[1]
        saved = data / "admin-token"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert saved.read_text().strip() == token
        with httpx.Client(base_url=first.url, trust_env=False) as http:
            auth = {"Authorization": f"Bearer {token}"}
            assert http.get("/v1/holders", headers=auth).status_code == 200
            wrong = http.get("/v1/holders", headers={"Authorization": "Bearer pha_not-it"})
            assert wrong.status_code == 401

    with running_server(tmp_path / "second", data_dir=str(data)) as second:
        second.wait_healthy(path="/readyz")
        # the registry's own log lines go out beside uvicorn's (they went nowhere)
        assert re.search(r"INFO: +recovered 0 holds from \S+ in ", second.stderr()), second.output()
        printed = second.stdout()
        assert f"pageholder serving on {second.url}" in printed
        assert token not in printed and "admin token" not in printed, printed
        with httpx.Client(base_url=second.url, trust_env=False) as http:
            response = http.get("/v1/holders", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text


async def test_sigterm_lets_a_release_in_flight_finish(tmp_path: Path) -> None:
    called = asyncio.Event()
    gate = asyncio.Event()

    async def waits(request: ReleaseRequest) -> None:
        called.set()
        await asyncio.wait_for(gate.wait(), 20)

    with running_server(tmp_path, admin_token=ADMIN_TOKEN) as server:
        async with AsyncExitStack() as stack:
            admin = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    trust_env=False,
                    timeout=30,
                )
            )
            live = Live(server, admin, stack)
            await live.holder("term-nic0", waits)
            await live.hold("term-nic0", NORMAL)
            release = asyncio.create_task(live.release(NORMAL))
            try:
                await asyncio.wait_for(called.wait(), 10)
                server.process.send_signal(signal.SIGTERM)
                for _ in range(200):
                    if "Shutting down" in server.stderr():
                        break
                    await asyncio.sleep(0.05)
                assert "Shutting down" in server.stderr()
                assert server.process.poll() is None  # still waiting for our release
            finally:
                gate.set()
                released = await release
        assert released.status_code == 200, released.text
        assert released.json()["result"] == "released"
        await asyncio.to_thread(server.process.wait, 10)
        assert "Application shutdown complete" in server.stderr()


def test_a_missing_layout_file_is_one_line_of_error() -> None:
    port = str(free_port())
    done = run_pageholder(
        "serve", "--layout", "/nonexistent.toml", "--data-dir", ":memory:", "--port", port
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert "/nonexistent.toml" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_a_wrong_log_level_is_one_line_of_error() -> None:
    port = str(free_port())
    done = run_pageholder("serve", "--log-level", "loud", "--data-dir", ":memory:", "--port", port)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "error: --log-level 'loud': one of critical, error, warning, info, debug, trace"
    ], done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "serving" not in done.stdout


# --- holding and releasing -----------------------------------------------------------


async def test_a_new_users_path_hold_look_up_release(live: Live) -> None:
    base = first_pfn(33)
    receiver = await live.holder("path-nic0")
    assert receiver is not None
    await live.hold("path-nic0", base)
    await live.hold("path-nic0", base + 512, order=9)

    inside = await live.page(base + 512 + 100)
    assert (inside["held"], inside["holder"], inside["head_pfn"], inside["order"]) == (
        True,
        "path-nic0",
        base + 512,
        9,
    )
    assert (inside["state"], inside["zone"], inside["block"]) == ("held", "0/Normal", 33)
    listed = await live.admin.get("/v1/pages", params={"start": base, "end": base + BLOCK_PAGES})
    assert [(h["pfn"], h["order"], h["holder"]) for h in listed.json()["items"]] == [
        (base, 0, "path-nic0"),
        (base + 512, 9, "path-nic0"),
    ]

    released = await live.release(base + 512)
    assert released.status_code == 200, released.text
    assert released.json() == {
        "result": "released",
        "holder": "path-nic0",
        "pfn": base + 512,
        "order": 9,
        "webhook_calls": 1,
    }
    (call,) = receiver.calls
    assert (call.holder, call.reason, call.block) == ("path-nic0", "release", None)
    assert call.pages == (Page(base + 512, 9),)

    freed = await live.page(base + 512)
    assert (freed["held"], freed["holder"], freed["state"]) == (False, None, None)
    assert (await live.page(base))["holder"] == "path-nic0"


async def test_releases_that_fail_leave_the_page_held(live: Live) -> None:
    base = first_pfn(34)
    let_go = asyncio.Event()

    async def slow(request: ReleaseRequest) -> None:
        await asyncio.wait_for(let_go.wait(), 10)  # far longer than its timeout_s

    await live.holder("fail-rdma", lambda request: ReleaseResult.refuse("pinned"))
    await live.holder("fail-slow", slow, timeout_s=0.5)
    await live.holder("fail-balloon", on_release=None)
    await live.holder("fail-forged", secret=OTHER_SECRET)  # cannot verify our calls
    names = ["fail-rdma", "fail-slow", "fail-balloon", "fail-forged"]
    for i, name in enumerate(names):
        await live.hold(name, base + i)

    refused = assert_problem(await live.release(base), 502, "release_failed")
    assert "pinned" in refused["detail"]
    started = time.monotonic()
    assert_problem(await live.release(base + 1), 504, "release_timeout")
    assert time.monotonic() - started < 5
    let_go.set()  # the late "released" must change nothing
    assert_problem(await live.release(base + 2), 409, "no_release_handler")
    forged = assert_problem(await live.release(base + 3), 502, "release_failed")
    assert "401" in forged["detail"], forged

    await asyncio.sleep(0.2)
    for i, name in enumerate(names):
        page = await live.page(base + i)
        assert (page["held"], page["holder"], page["state"]) == (True, name, "held")
    rdma = (await live.admin.get("/v1/holders/fail-rdma")).json()
    assert "pinned" in rdma["last_error"]


async def test_twenty_concurrent_releases_make_one_webhook_call(live: Live) -> None:
    pfn = first_pfn(35)
    called = asyncio.Event()
    gate = asyncio.Event()

    async def waits(request: ReleaseRequest) -> None:
        called.set()
        await asyncio.wait_for(gate.wait(), 20)

    receiver = await live.holder("crowd-nic0", waits)
    assert receiver is not None
    await live.hold("crowd-nic0", pfn, order=4)

    sent = 0
    all_sent = asyncio.Event()

    async def trace(event: str, info: dict[str, Any]) -> None:
        nonlocal sent
        if event == "http11.send_request_body.complete":
            sent += 1
            if sent == 20:
                all_sent.set()

    tasks = [asyncio.create_task(live.release(pfn, extensions={"trace": trace})) for _ in range(20)]
    try:
        await asyncio.wait_for(asyncio.gather(called.wait(), all_sent.wait()), 10)
        # Every request is on the server's sockets; give it a moment to route them all
        # to the release in flight before that release ends.
        await asyncio.sleep(0.5)
        assert (await live.page(pfn))["state"] == "releasing"
    finally:
        gate.set()
        responses = await asyncio.gather(*tasks)

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert {r.text for r in responses} == {responses[0].text}
    assert responses[0].json()["result"] == "released"
    (call,) = receiver.calls
    assert call.pages == (Page(pfn, 4),)
    assert (await live.page(pfn))["held"] is False


async def test_offlining_a_block_held_by_two_cooperative_holders(live: Live) -> None:
    base = first_pfn(36)
    nic0 = await live.holder("off-nic0")
    gpu0 = await live.holder("off-gpu0")
    assert nic0 is not None and gpu0 is not None
    await live.hold("off-nic0", base, order=9)
    await live.hold("off-nic0", base + 1024)
    await live.hold("off-gpu0", base + 4096, order=12)

    response = await live.admin.post("/v1/blocks/36/offline", json={"deadline_s": 10})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["block"], report["state"], report["failures"]) == (36, "offline", [])
    assert (report["released_holds"], report["released_pages"]) == (3, 512 + 1 + 4096)
    assert report["webhook_calls"] == 2
    for receiver, pages in ((nic0, {(base, 9), (base + 1024, 0)}), (gpu0, {(base + 4096, 12)})):
        (call,) = receiver.calls
        assert (call.reason, call.block) == ("offline", 36)
        assert {(p.pfn, p.order) for p in call.pages} == pages
    block = (await live.admin.get("/v1/blocks/36")).json()
    assert (block["state"], block["held_pages"], block["holds"]) == ("offline", 0, 0)


# --- what else it serves -------------------------------------------------------------


def webhook_calls(metrics: str) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "pageholder_webhook_calls_total"
    }


async def test_docs_and_spec_are_public_and_metrics_count_webhook_calls(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.server.url, trust_env=False) as anonymous:
        docs = await anonymous.get("/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        assert "swagger-ui" in docs.text and "/openapi.json" in docs.text
        spec = await anonymous.get("/openapi.json")
        assert spec.status_code == 200
        assert "/v1/pages/{pfn}/release" in spec.json()["paths"]
        assert_problem(await anonymous.get("/metrics"), 401, "unauthorized")
        assert_problem(await anonymous.get("/v1/holders"), 401, "unauthorized")

    before = webhook_calls((await live.admin.get("/metrics")).text)
    base = first_pfn(37)
    await live.holder("metrics-ok")
    await live.holder("metrics-busy", lambda request: ReleaseResult.refuse("DMA in flight"))
    await live.hold("metrics-ok", base)
    await live.hold("metrics-busy", base + 1)
    assert (await live.release(base)).status_code == 200
    assert_problem(await live.release(base + 1), 502, "release_failed")

    metrics = await live.admin.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'pageholder_webhook_calls_total{outcome="released"}' in metrics.text
    after = webhook_calls(metrics.text)
    assert after["released"] == before.get("released", 0) + 1
    assert after["failed"] == before.get("failed", 0) + 1
