"""The client against the real app, in process, and against scripted transports.

The async client talks to the app through ``httpx.ASGITransport``. The sync client
gets ``PortalTransport``: a sync httpx transport that hands each request to an
``httpx.ASGITransport`` on the event loop of an anyio blocking portal, where the app's
lifespan runs too. (Starlette's ``TestClient`` would do, but it is moving to the
``httpx2`` fork and warns when it runs on ``httpx``.) Release handlers are a
fake release caller that answers by the end of the holder's ``release_url``: ``/ok``
releases, ``/refuse`` fails, ``/slow`` times out, ``/gate`` waits for ``caller.gate``.
Retries and odd answers use ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from pageholder.client import (
    EXCEPTIONS_BY_CODE,
    AsyncPageHolderClient,
    BlockNotFound,
    BlockNotOffline,
    BlockNotOnline,
    ClientError,
    Conflict,
    ConnectError,
    CrossesZone,
    Forbidden,
    Hold,
    HolderCreated,
    HolderExists,
    HolderHasHolds,
    HolderNotFound,
    InternalError,
    InvalidRequest,
    Misaligned,
    MultizoneBlock,
    NoReleaseHandler,
    NotFound,
    NotHead,
    NotReady,
    OfflineFailed,
    PageHeld,
    PageHolderClient,
    PageHolderError,
    PageNotHeld,
    PageReleasing,
    PayloadTooLarge,
    PfnNotFound,
    ReleaseFailed,
    ReleaseTimeout,
    Retry,
    Timeout,
    TimeoutException,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
)
from pageholder.service.api import create_app
from pageholder.service.api.problems import STATUS
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import FailureReason, Holder, PageRef, ReleaseAnswer
from pageholder.service.settings import Settings

TOKEN = "admin-token-for-client-tests-0123"
URL = "http://registry.test"
NORMAL = 1 << 20  # first pfn of zone 0/Normal in the default layout
BLOCK = 32768  # pages per 128 MiB memory block
NO_RETRY = Retry.never()
FAST_RETRY = Retry(backoff_s=0.0)


class FakeCaller:
    """A release caller that answers by the end of the holder's release_url."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int], str, int | None]] = []
        self.gate = asyncio.Event()

    async def __call__(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer:
        self.calls.append((holder.name, [p.pfn for p in pages], reason, block))
        url = holder.release_url or ""
        if url.endswith("/refuse"):
            return ReleaseAnswer.all_failed(pages, FailureReason.RELEASE_FAILED, "pinned by DMA")
        if url.endswith("/slow"):
            return ReleaseAnswer.all_failed(pages, FailureReason.RELEASE_TIMEOUT, "no answer")
        if url.endswith("/gate"):
            await self.gate.wait()
        return ReleaseAnswer.all_released(pages)


def make_app(caller: FakeCaller, layout: MemoryLayout | None = None) -> FastAPI:
    settings = Settings(data_dir=":memory:", admin_token=TOKEN)
    return create_app(settings, layout=layout, release_caller=caller)


@dataclass
class Registry:
    """The running app, its fake release caller, and async clients for any token."""

    app: FastAPI
    caller: FakeCaller
    transport: httpx.ASGITransport
    admin: AsyncPageHolderClient
    opened: list[AsyncPageHolderClient] = field(default_factory=list)

    def client(self, token: str | None, retry: Retry = NO_RETRY) -> AsyncPageHolderClient:
        client = AsyncPageHolderClient(URL, token, retry=retry, transport=self.transport)
        self.opened.append(client)
        return client

    async def holder(self, name: str, url: str | None = "http://h.test/ok") -> HolderCreated:
        return await self.admin.create_holder(name, url)


async def running(layout: MemoryLayout | None = None) -> AsyncIterator[Registry]:
    caller = FakeCaller()
    app = make_app(caller, layout)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        admin = AsyncPageHolderClient(URL, TOKEN, retry=NO_RETRY, transport=transport)
        registry = Registry(app, caller, transport, admin)
        async with admin:
            yield registry
            for client in registry.opened:
                await client.aclose()


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async for started in running():
        yield started


# -- holders --------------------------------------------------------------------------------


async def test_a_holder_from_registration_to_removal(registry: Registry) -> None:
    admin = registry.admin
    created = await admin.create_holder(
        "nic0", "http://h.test/ok", timeout_s=2.5, description="RDMA of mlx0"
    )
    assert isinstance(created, HolderCreated)
    assert created.token.startswith("pht_") and created.webhook_secret.startswith("whsec_")
    assert (created.name, created.release_url, created.timeout_s) == (
        "nic0",
        "http://h.test/ok",
        2.5,
    )
    assert created.created.tzinfo is not None
    assert abs((datetime.now(UTC) - created.created).total_seconds()) < 60
    with pytest.raises(HolderExists) as exists:
        await admin.create_holder("nic0")
    assert (exists.value.status, exists.value.code) == (409, "holder_exists")

    holder = await admin.get_holder("nic0")
    assert (holder.holds, holder.held_pages, holder.last_error) == (0, 0, None)
    assert [h.name for h in await admin.list_holders()] == ["nic0"]

    # Only the given fields are sent: a new description leaves the release URL alone ...
    changed = await admin.update_holder("nic0", description="now mlx1")
    assert (changed.description, changed.release_url) == ("now mlx1", "http://h.test/ok")
    # ... and release_url=None is sent, and removes the release handler.
    cleared = await admin.update_holder("nic0", release_url=None, timeout_s=1.0)
    assert (cleared.release_url, cleared.timeout_s, cleared.description) == (None, 1.0, "now mlx1")

    await admin.hold(NORMAL, "nic0")
    with pytest.raises(HolderHasHolds):
        await admin.delete_holder("nic0")
    await admin.delete_holder("nic0", force=True)
    with pytest.raises(HolderNotFound) as missing:
        await admin.get_holder("nic0")
    assert missing.value.status == 404 and "nic0" in missing.value.detail
    assert (await admin.get_page(NORMAL)).held is False


async def test_a_holder_token_acts_for_its_holder_only(registry: Registry) -> None:
    nic0 = registry.client((await registry.holder("nic0")).token)
    await registry.holder("gpu0")
    held = await nic0.hold(NORMAL)  # the holder defaults to the token's
    assert (held.holder, held.result) == ("nic0", "created")
    assert (await nic0.update_holder("nic0", description="mine")).description == "mine"
    for forbidden in (
        nic0.update_holder("gpu0", description="theirs"),
        nic0.delete_holder("gpu0"),
        nic0.delete_holder("nic0", force=True),
        nic0.release(NORMAL),
        nic0.offline_block(40),
        nic0.create_holder("disk0"),
        nic0.metrics(),
    ):
        with pytest.raises(Forbidden) as refused:
            await forbidden
        assert refused.value.status == 403
    await nic0.unset(NORMAL)
    await nic0.delete_holder("nic0")
    assert [h.name for h in await registry.admin.list_holders()] == ["gpu0"]


async def test_no_token_or_a_wrong_one_is_unauthorized(registry: Registry) -> None:
    for client in (registry.client(None), registry.client("pht_not-a-token")):
        with pytest.raises(Unauthorized) as refused:
            await client.list_holders()
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        assert refused.value.problem["type"] == "urn:pageholder:problem:unauthorized"
        assert await client.healthz() is True
        assert await client.readyz() is True


# -- pages and holds ------------------------------------------------------------------------


async def test_hold_look_up_and_unset(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    await registry.holder("gpu0")
    free = await admin.get_page(NORMAL + 5)
    assert (free.held, free.holder, free.since, free.zone, free.block) == (
        False,
        None,
        None,
        "0/Normal",
        NORMAL // BLOCK,
    )

    created = await admin.hold(NORMAL, "nic0", order=4)
    assert (created.result, created.pfn, created.order, created.state) == (
        "created",
        NORMAL,
        4,
        "held",
    )
    assert created.since.tzinfo is not None and created.previous is None
    assert (await admin.hold(NORMAL, "nic0", order=4)).result == "unchanged"
    page = await admin.get_page(NORMAL + 5)
    assert (page.held, page.holder, page.head_pfn, page.order) == (True, "nic0", NORMAL, 4)

    with pytest.raises(PageHeld) as held:
        await admin.hold(NORMAL + 8, "gpu0", order=3)
    assert (held.value.holder, held.value.head_pfn) == ("nic0", NORMAL)
    overwritten = await admin.hold(NORMAL, "gpu0", order=5, overwrite=True)
    assert (overwritten.result, overwritten.previous) == ("overwritten", "nic0")
    assert [(h.pfn, h.order, h.holder) for h in overwritten.replaced] == [(NORMAL, 4, "nic0")]

    with pytest.raises(NotHead) as not_head:
        await admin.unset(NORMAL + 1)
    assert not_head.value.head_pfn == NORMAL
    await admin.unset(NORMAL)
    with pytest.raises(PageNotHeld):
        await admin.unset(NORMAL)


async def test_bad_holds_raise_their_own_errors(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    with pytest.raises(Misaligned) as misaligned:
        await admin.hold(NORMAL + 1, "nic0", order=1)
    assert isinstance(misaligned.value, InvalidRequest) and misaligned.value.status == 422
    with pytest.raises(PfnNotFound):
        await admin.get_page(0)
    with pytest.raises(PfnNotFound):
        await admin.hold(1 << 40, "nic0")
    with pytest.raises(HolderNotFound):
        await admin.hold(NORMAL, "nobody")
    with pytest.raises(InvalidRequest) as invalid:
        await admin.hold(NORMAL, "nic0", order=19)
    assert [e.field for e in invalid.value.errors] == ["order"]
    assert invalid.value.errors[0].message
    with pytest.raises(InvalidRequest) as no_holder:
        await admin.hold(NORMAL)  # the admin must name the holder
    assert no_holder.value.code == "invalid_request" and no_holder.value.errors == []


async def test_a_hold_that_crosses_zones() -> None:
    layout = MemoryLayout.from_toml_text(
        "block_size = 4194304\n"
        '[[zone]]\nnode = 0\nname = "DMA32"\nstart_pfn = 0\nspanned_pages = 1000\n'
        '[[zone]]\nnode = 0\nname = "Normal"\nstart_pfn = 1000\nspanned_pages = 4000\n'
    )
    async for registry in running(layout):
        await registry.holder("nic0")
        with pytest.raises(CrossesZone) as crosses:
            await registry.admin.hold(992, "nic0", order=4)
        assert crosses.value.code == "crosses_zone"


async def test_release_and_its_failures(registry: Registry) -> None:
    admin = registry.admin
    for name, url in [
        ("nic0", "http://h.test/ok"),
        ("stuck", "http://h.test/refuse"),
        ("slow", "http://h.test/slow"),
        ("balloon", None),
    ]:
        await registry.holder(name, url)
    for i, name in enumerate(("nic0", "stuck", "slow", "balloon")):
        await admin.hold(NORMAL + 64 * i, name, order=6)

    released = await admin.release(NORMAL + 5)
    assert (released.result, released.holder, released.pfn, released.order) == (
        "released",
        "nic0",
        NORMAL,
        6,
    )
    assert released.webhook_calls == 1
    assert registry.caller.calls[-1] == ("nic0", [NORMAL], "release", None)
    with pytest.raises(ReleaseFailed) as failed:
        await admin.release(NORMAL + 64)
    assert failed.value.status == 502 and "pinned by DMA" in failed.value.detail
    assert "pinned by DMA" in str((await admin.get_holder("stuck")).last_error)
    with pytest.raises(ReleaseTimeout) as timed_out:
        await admin.release(NORMAL + 128)
    assert timed_out.value.status == 504
    with pytest.raises(NoReleaseHandler):
        await admin.release(NORMAL + 192)
    with pytest.raises(PageNotHeld):
        await admin.release(NORMAL)


async def test_a_page_being_released_cannot_be_unset(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0", "http://h.test/gate")
    await admin.hold(NORMAL, "nic0", order=2)
    releasing = asyncio.create_task(admin.release(NORMAL))
    for _ in range(1000):
        if (await admin.get_page(NORMAL)).state == "releasing":
            break
        await asyncio.sleep(0.001)
    with pytest.raises(PageReleasing):
        await admin.unset(NORMAL)
    registry.caller.gate.set()
    assert (await releasing).holder == "nic0"


async def test_list_holds_page_by_page(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    await registry.holder("gpu0")
    results = await admin.batch_set("nic0", ranges=[(NORMAL, 20)])
    assert {r.status for r in results} == {"created"}
    await admin.hold(NORMAL + 64, "gpu0", order=6)

    first = await admin.list_holds(NORMAL, limit=8)
    assert [h.pfn for h in first.items] == list(range(NORMAL, NORMAL + 8))
    assert all(isinstance(h, Hold) for h in first.items) and first.next_cursor is not None
    second = await admin.list_holds(NORMAL, limit=8, cursor=first.next_cursor)
    assert second.items[0].pfn == NORMAL + 8

    every = [h async for h in admin.iter_holds(page_size=7)]
    assert [h.pfn for h in every] == [*range(NORMAL, NORMAL + 20), NORMAL + 64]
    assert [h.pfn async for h in admin.iter_holds(holder="gpu0")] == [NORMAL + 64]
    window = [h.pfn async for h in admin.iter_holds(NORMAL + 5, NORMAL + 10, page_size=2)]
    assert window == list(range(NORMAL + 5, NORMAL + 10))
    last = await admin.list_holds(NORMAL + 64)
    assert (len(last.items), last.next_cursor) == (1, None)

    with pytest.raises(InvalidRequest):
        await admin.list_holds(cursor="not-a-cursor")
    with pytest.raises(InvalidRequest):
        await admin.list_holds(10, 5)
    with pytest.raises(HolderNotFound):
        await admin.list_holds(holder="nobody")


# -- batches --------------------------------------------------------------------------------


async def test_batches(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    await registry.holder("gpu0")
    results = await admin.batch_set(
        "nic0", pages=[NORMAL, (NORMAL + 64, 6)], ranges=[(NORMAL + 8, 3)]
    )
    assert [(r.pfn, r.order, r.status) for r in results] == [
        (NORMAL, 0, "created"),
        (NORMAL + 64, 6, "created"),
        (NORMAL + 8, 0, "created"),
        (NORMAL + 9, 0, "created"),
        (NORMAL + 10, 0, "created"),
    ]
    mixed = await admin.batch_set("gpu0", pages=[NORMAL, NORMAL + 1])
    assert [(r.status, r.code) for r in mixed] == [("error", "page_held"), ("created", None)]
    with pytest.raises(PageHeld):
        await admin.batch_set("gpu0", pages=[NORMAL + 2, NORMAL + 8], atomic=True)
    assert (await admin.get_page(NORMAL + 2)).held is False  # all or nothing

    taken = await admin.batch_set("gpu0", pages=[NORMAL + 8], overwrite=True)
    assert [r.status for r in taken] == ["overwritten"]

    nic1 = registry.client((await admin.create_holder("nic1")).token)
    with pytest.raises(Forbidden):
        await nic1.batch_unset("gpu0", pages=[NORMAL + 1])
    unset = await admin.batch_unset("gpu0", pages=[NORMAL + 1, NORMAL + 8, NORMAL + 9])
    assert [(r.status, r.code) for r in unset] == [
        ("unset", None),
        ("unset", None),
        ("error", "forbidden"),
    ]
    assert [r.status for r in await admin.batch_unset(ranges=[(NORMAL + 9, 2)])] == [
        "unset",
        "unset",
    ]

    with pytest.raises(PayloadTooLarge) as too_large:
        await admin.batch_set("nic0", ranges=[(NORMAL, 65536)], pages=[NORMAL + 70000])
    assert too_large.value.status == 413
    with pytest.raises(PayloadTooLarge):
        await admin.batch_unset(ranges=[(NORMAL, 65537)])


# -- zones, blocks, offline -----------------------------------------------------------------


async def test_zones_and_blocks(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    await admin.hold(NORMAL, "nic0", order=9)
    zones = await admin.list_zones()
    assert [z.id for z in zones] == ["0/DMA", "0/DMA32", "0/Normal"]
    normal = zones[-1]
    assert (normal.start_pfn, normal.held_pages, normal.holds) == (NORMAL, 512, 1)

    block = await admin.get_block(NORMAL // BLOCK)
    assert (block.start_pfn, block.nr_pages, block.zone, block.zones) == (
        NORMAL,
        BLOCK,
        "0/Normal",
        ("0/Normal",),
    )
    assert (block.state, block.held_pages, block.holds, block.removable) == ("online", 512, 1, True)
    with pytest.raises(BlockNotFound):
        await admin.get_block(1 << 30)

    first = await admin.list_blocks(limit=50)
    assert [b.id for b in first.items] == list(range(50)) and first.next_cursor is not None
    every = [b.id async for b in admin.iter_blocks(page_size=50)]
    assert every == list(range(128))
    assert [b.id async for b in admin.iter_blocks(held=True)] == [NORMAL // BLOCK]
    normal_blocks = [b async for b in admin.iter_blocks(zone="0/Normal", page_size=30)]
    assert normal_blocks[0].id == NORMAL // BLOCK and len(normal_blocks) == 128 - 32
    assert (await admin.list_blocks(state="offline")).items == ()
    with pytest.raises(InvalidRequest):
        await admin.list_blocks(zone="9/Nowhere")
    with pytest.raises(InvalidRequest):
        await admin.list_blocks(state="melted")


async def test_offline_and_online(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("nic0")
    await admin.hold(34 * BLOCK + 512, "nic0", order=9)

    report = await admin.offline_block(34, deadline_s=5)
    assert (report.block, report.state, report.released_holds, report.released_pages) == (
        34,
        "offline",
        1,
        512,
    )
    assert report.webhook_calls == 1 and report.failures == () and report.duration_ms >= 0
    assert registry.caller.calls[-1] == ("nic0", [34 * BLOCK + 512], "offline", 34)
    assert (await admin.get_block(34)).state == "offline"
    assert [b.id async for b in admin.iter_blocks(state="offline")] == [34]
    with pytest.raises(BlockNotOnline):
        await admin.hold(34 * BLOCK, "nic0")
    with pytest.raises(BlockNotOnline):
        await admin.offline_block(34)

    assert (await admin.online_block(34)).state == "online"
    with pytest.raises(BlockNotOffline):
        await admin.online_block(34)
    with pytest.raises(MultizoneBlock):
        await admin.offline_block(0)
    with pytest.raises(BlockNotFound):
        await admin.offline_block(1 << 30)


async def test_a_failed_offline_carries_its_report(registry: Registry) -> None:
    admin = registry.admin
    await registry.holder("balloon", url=None)
    await admin.hold(33 * BLOCK + 8, "balloon", order=3)
    with pytest.raises(OfflineFailed) as failed:
        await admin.offline_block(33)
    error = failed.value
    assert (error.status, error.code) == (409, "offline_failed")
    assert isinstance(error, Conflict) and error.report is not None
    assert (error.report.block, error.report.state, error.report.released_holds) == (
        33,
        "online",
        0,
    )
    [failure] = error.report.failures
    assert (failure.holder, failure.pfn, failure.order, failure.reason) == (
        "balloon",
        33 * BLOCK + 8,
        3,
        "no_release_handler",
    )
    assert error.problem["report"]["failures"][0]["holder"] == "balloon"
    block = await admin.get_block(33)
    assert (block.state, block.removable) == ("online", False)


# -- health, metrics, crashes ---------------------------------------------------------------


async def test_health_metrics_and_readiness(registry: Registry) -> None:
    await registry.holder("nic0")
    await registry.admin.hold(NORMAL, "nic0", order=3)
    assert await registry.admin.healthz() is True
    assert await registry.admin.readyz() is True
    assert 'pageholder_held_pages{zone="0/Normal"} 8.0' in await registry.admin.metrics()
    with pytest.raises(Unauthorized):
        await registry.client(None).metrics()
    registry.app.state.service.ready = False
    assert await registry.admin.readyz() is False


async def test_a_crash_is_an_internal_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(pfn: int) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(registry.app.state.service.registry, "lookup", broken)
    with pytest.raises(InternalError) as crashed:
        await registry.admin.get_page(NORMAL)
    assert crashed.value.status == 500 and "secret" not in crashed.value.detail


# -- the sync client, through a blocking portal ---------------------------------------------


class PortalTransport(httpx.BaseTransport):
    """A sync transport that sends through ``httpx.ASGITransport`` on a portal's loop."""

    def __init__(self, portal: BlockingPortal, app: FastAPI) -> None:
        self.portal = portal
        self.asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return self.portal.call(send)


@contextmanager
def serving(caller: FakeCaller) -> Iterator[PortalTransport]:
    """The app, its lifespan running on a portal thread, and a sync transport to it."""
    app = make_app(caller)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        yield PortalTransport(portal, app)


def test_the_sync_client_walks_every_endpoint() -> None:
    caller = FakeCaller()
    with (
        serving(caller) as transport,
        httpx.Client(transport=transport) as http,
        PageHolderClient(URL, TOKEN, retry=NO_RETRY, transport=transport) as admin,
    ):
        assert admin.healthz() and admin.readyz()
        nic0 = admin.create_holder("nic0", "http://h.test/ok", description="d")
        admin.create_holder("balloon")
        assert [h.name for h in admin.list_holders()] == ["balloon", "nic0"]
        assert admin.update_holder("nic0", timeout_s=3).release_url == "http://h.test/ok"
        assert admin.get_holder("nic0").timeout_s == 3

        # An httpx.Client of one's own: the pageholder client sends through it.
        with PageHolderClient(URL, nic0.token, http_client=http) as own:
            assert own.hold(NORMAL, order=2).result == "created"
            with pytest.raises(Forbidden):
                own.release(NORMAL)
        # It belongs to the caller: closing the pageholder client left it open.
        assert not http.is_closed and len(own.list_zones()) == 3
        assert admin.get_page(NORMAL + 3).holder == "nic0"
        with pytest.raises(PageHeld):
            admin.hold(NORMAL, "balloon")
        assert admin.release(NORMAL).webhook_calls == 1
        admin.hold(NORMAL, "nic0")
        admin.unset(NORMAL)
        assert [r.status for r in admin.batch_set("nic0", ranges=[(NORMAL, 5)])] == ["created"] * 5
        assert len(admin.list_holds(limit=2).items) == 2
        assert [h.pfn for h in admin.iter_holds(page_size=2)] == list(range(NORMAL, NORMAL + 5))
        assert len(admin.batch_unset(pages=[NORMAL, NORMAL + 1])) == 2

        assert len(admin.list_zones()) == 3
        assert len(admin.list_blocks(limit=3).items) == 3
        assert sum(1 for _ in admin.iter_blocks(zone="0/DMA32", page_size=10)) == 32
        assert admin.offline_block(40, deadline_s=5).state == "offline"
        assert admin.get_block(40).state == "offline"
        assert admin.online_block(40).state == "online"
        admin.hold(33 * BLOCK, "balloon")
        with pytest.raises(OfflineFailed) as failed:
            admin.offline_block(33)
        assert failed.value.report is not None
        assert failed.value.report.failures[0].reason == "no_release_handler"
        assert "pageholder_holds" in admin.metrics()
        admin.delete_holder("balloon", force=True)
        with pytest.raises(HolderNotFound):
            admin.delete_holder("balloon")


def test_transport_and_http_client_exclude_each_other() -> None:
    with httpx.Client() as http, pytest.raises(ValueError):
        PageHolderClient(URL, transport=httpx.MockTransport(_ok_zones), http_client=http)


# -- what goes on the wire ------------------------------------------------------------------


def _ok_zones(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"items": []})


def recorder(
    answer: Callable[[httpx.Request], httpx.Response] = _ok_zones,
) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return seen, httpx.MockTransport(handler)


def test_requests_carry_the_token_and_only_the_given_fields() -> None:
    holder = {
        "name": "nic 0",
        "release_url": None,
        "timeout_s": 10.0,
        "description": "",
        "created": "2026-01-01T00:00:00Z",
        "holds": 0,
        "held_pages": 0,
        "last_error": None,
    }
    seen, transport = recorder(lambda r: httpx.Response(200, json=holder))
    with PageHolderClient(URL + "/prefix/", "tok", transport=transport) as client:
        assert client.update_holder("nic 0", description="x").created == datetime(
            2026, 1, 1, tzinfo=UTC
        )
        client.update_holder("nic 0", release_url=None)
    first, second = seen
    assert str(first.url) == URL + "/prefix/v1/holders/nic%200"
    assert first.headers["Authorization"] == "Bearer tok"
    assert first.headers["User-Agent"].startswith("pageholder-client/")
    assert json.loads(first.content) == {"description": "x"}
    assert json.loads(second.content) == {"release_url": None}

    body: dict[str, object] = {"results": [], "items": [], "next_cursor": None}
    seen, transport = recorder(lambda r: httpx.Response(200, json=body))
    with PageHolderClient(URL, transport=transport) as client:
        client.batch_set(pages=[5, (8, 3)], ranges=[(16, 4)])
        client.list_blocks(held=False, limit=5)
    assert "Authorization" not in seen[0].headers
    assert json.loads(seen[0].content) == {
        "overwrite": False,
        "atomic": False,
        "pages": [{"pfn": 5, "order": 0}, {"pfn": 8, "order": 3}],
        "ranges": [{"start_pfn": 16, "nr_pages": 4}],
    }
    assert dict(seen[1].url.params) == {"held": "false", "limit": "5"}


def test_an_offline_waits_for_its_deadline() -> None:
    seen, transport = recorder(lambda r: httpx.Response(500, json={}))
    with PageHolderClient(URL, timeout=Timeout(read=10), transport=transport) as client:
        with pytest.raises(InternalError):
            client.offline_block(3, deadline_s=60)
        with pytest.raises(InternalError):
            client.get_block(3)
    assert seen[0].extensions["timeout"]["read"] == 65
    assert seen[1].extensions["timeout"] == {"connect": 5.0, "read": 10, "write": 30, "pool": 5}
    assert Timeout.of(2).to_httpx() == httpx.Timeout(2.0)


@pytest.mark.parametrize("code", sorted(STATUS))
def test_every_server_problem_raises_its_class(code: str) -> None:
    problem = {"type": f"urn:pageholder:problem:{code}", "title": "t", "status": STATUS[code]}
    problem |= {"detail": f"about {code}", "code": code}
    answer = httpx.Response(STATUS[code], json=problem)
    with PageHolderClient(URL, retry=NO_RETRY, transport=recorder(lambda r: answer)[1]) as c:
        with pytest.raises(PageHolderError) as raised:
            c.list_zones()
    assert type(raised.value) is EXCEPTIONS_BY_CODE[code]
    error = raised.value
    assert (error.status, error.code, error.detail, error.problem) == (
        STATUS[code],
        code,
        f"about {code}",
        problem,
    )


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (409, {"code": "brand_new_conflict", "detail": "d"}, Conflict, "brand_new_conflict"),
        (418, {"code": "teapot", "detail": "d"}, PageHolderError, "teapot"),
        (404, "<html>no</html>", NotFound, None),
        (502, "<html>bad gateway</html>", PageHolderError, None),
    ],
)
def test_unknown_codes_fall_back_by_status(
    status: int, body: object, expected: type[PageHolderError], code: str | None
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=str(body))

    with PageHolderClient(URL, retry=NO_RETRY, transport=recorder(answer)[1]) as client:
        with pytest.raises(PageHolderError) as raised:
            client.list_zones()
    assert isinstance(raised.value, expected) and raised.value.code == code
    assert raised.value.status == status


def test_answers_the_api_does_not_give() -> None:
    for answer in (
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"unexpected": []}),
        httpx.Response(200, json={"items": [{"id": "zone without fields"}]}),
        httpx.Response(302, headers={"Location": "/elsewhere"}),
    ):
        transport = httpx.MockTransport(lambda request, answer=answer: answer)
        with PageHolderClient(URL, transport=transport) as client:
            with pytest.raises(UnexpectedResponse) as raised:
                client.list_zones()
        assert raised.value.status == answer.status_code
        assert isinstance(raised.value, ClientError)


# -- retries --------------------------------------------------------------------------------


def scripted(
    *answers: int | Exception, headers: dict[str, str] | None = None
) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A transport that answers with ``answers`` in turn: a status (503 is not_ready)
    or an exception to raise; once they run out, 200 with an empty zone list."""
    pending = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        if not pending:
            return httpx.Response(200, json={"items": []})
        next_answer = pending.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        body = {"code": "not_ready", "detail": "starting", "status": next_answer}
        return httpx.Response(next_answer, json=body, headers=headers)

    return recorder(answer)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_a_get_is_retried_on_503(sleeps: list[float]) -> None:
    seen, transport = scripted(503, 503)
    with PageHolderClient(URL, transport=transport) as client:
        assert client.list_zones() == []
    assert [r.method for r in seen] == ["GET"] * 3
    assert sleeps == [0.1, 0.2]  # Retry(): backoff_s=0.1, doubling


def test_retries_end_after_the_last_attempt(sleeps: list[float]) -> None:
    seen, transport = scripted(503, 502, 504, 503)
    retry = Retry(attempts=4, backoff_s=1.0, max_backoff_s=1.5)
    with PageHolderClient(URL, retry=retry, transport=transport) as client:
        with pytest.raises(PageHolderError) as raised:
            client.list_zones()
    assert len(seen) == 4 and raised.value.status == 503
    assert sleeps == [1.0, 1.5, 1.5]


def test_retry_after_is_honoured(sleeps: list[float]) -> None:
    seen, transport = scripted(503, headers={"Retry-After": "3"})
    with PageHolderClient(URL, transport=transport) as client:
        assert client.list_zones() == []
    assert (len(seen), sleeps) == (2, [3.0])

    seen, transport = scripted(503, headers={"Retry-After": "120"})
    with PageHolderClient(URL, transport=transport) as client:
        with pytest.raises(PageHolderError):
            client.list_zones()  # asks for more than max_retry_after_s: not waited for
    assert len(seen) == 1 and sleeps == [3.0]


def test_retry_settings() -> None:
    retry = Retry(backoff_s=0.5, max_backoff_s=3.0, max_retry_after_s=10.0)
    assert [retry.delay(n, None) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert (retry.delay(1, "7"), retry.delay(1, "11"), retry.delay(1, "soon")) == (7.0, None, 0.5)
    assert retry.delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    assert 3.0 < (retry.delay(1, soon) or 0.0) <= 5.0
    with pytest.raises(ValueError):
        Retry(attempts=0)
    assert Retry.never().attempts == 1


def test_a_post_or_a_patch_is_never_retried(sleeps: list[float]) -> None:
    calls: list[Callable[[PageHolderClient], object]] = [
        lambda c: c.release(NORMAL),
        lambda c: c.batch_set("nic0", pages=[NORMAL]),
        lambda c: c.update_holder("nic0", description="x"),
    ]
    for call in calls:
        seen, transport = scripted(503)
        with PageHolderClient(URL, transport=transport) as client:
            with pytest.raises(PageHolderError) as raised:
                call(client)
        assert len(seen) == 1 and raised.value.status == 503
        seen, transport = scripted(httpx.ConnectError("refused"))
        with PageHolderClient(URL, transport=transport) as client:
            with pytest.raises(ConnectError):
                call(client)
        assert len(seen) == 1
    assert sleeps == []


def test_put_and_delete_are_retried(sleeps: list[float]) -> None:
    seen, transport = scripted(503)
    with PageHolderClient(URL, transport=transport) as client, pytest.raises(UnexpectedResponse):
        client.hold(NORMAL, "nic0")  # retried, then the scripted 200 is not a hold
    seen2, transport = scripted(502)
    with PageHolderClient(URL, transport=transport) as client:
        client.unset(NORMAL)
    assert [r.method for r in seen + seen2] == ["PUT", "PUT", "DELETE", "DELETE"]


def test_transport_errors(sleeps: list[float]) -> None:
    seen, transport = scripted(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    with PageHolderClient(URL, transport=transport) as client:
        assert client.list_zones() == []
    assert len(seen) == 3

    for raised, expected in [
        (httpx.ConnectError("refused"), ConnectError),
        (httpx.ConnectTimeout("slow"), TimeoutException),
        (httpx.ReadTimeout("slow"), TimeoutException),
        (httpx.RemoteProtocolError("garbage"), TransportError),
    ]:
        _, transport = scripted(raised, raised, raised)
        with PageHolderClient(URL, transport=transport) as client:
            with pytest.raises(expected) as caught:
                client.get_holder("nic0")
        assert caught.value.__cause__ is raised and isinstance(caught.value, ClientError)


async def test_the_async_client_retries_too() -> None:
    seen, transport = scripted(503, httpx.ConnectError("refused"))
    async with AsyncPageHolderClient(URL, retry=FAST_RETRY, transport=transport) as client:
        assert await client.list_zones() == []
        assert len(seen) == 3
    seen, transport = scripted(503, httpx.ConnectError("refused"))
    async with AsyncPageHolderClient(URL, retry=FAST_RETRY, transport=transport) as client:
        with pytest.raises(NotReady):
            await client.release(NORMAL)
        with pytest.raises(ConnectError):
            await client.release(NORMAL)
    assert [r.method for r in seen] == ["POST", "POST"]
