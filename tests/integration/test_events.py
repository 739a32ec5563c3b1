"""GET /v1/events on a real socket: catch-up then live, batches and offlines as whole
revisions, 410 past the retention, overflow of a reader that never reads, visibility
per token, a hundred subscribers, and client.watch() across a cut connection."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from pageholder.client import EventsCompacted, Forbidden
from pageholder.service.core.events import MAX_EVENT_HOLDS

from .watching import (
    DEADLINE_S,
    NORMAL,
    TOKEN,
    Collector,
    Proxy,
    revs,
    serving,
    stuck_subscriber,
    subscribed,
)

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def frames(text: str) -> list[dict[str, str]]:
    """The SSE frames of a stream's text: each a dict of its fields (comments dropped)."""
    found = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if fields:
            found.append(fields)
    return found


async def read_stream(url: str, until: str, params: dict[str, object], token: str = TOKEN) -> str:
    """The stream's text up to and including the first frame that contains ``until``."""
    text = ""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        asyncio.timeout(DEADLINE_S),
        httpx.AsyncClient(timeout=DEADLINE_S) as http,
        http.stream("GET", url + "/v1/events", params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_text():
            text += chunk
            if until in text and text.endswith("\n\n"):
                return text
    raise AssertionError(f"stream ended before {until!r}: {text[-500:]}")


async def test_catch_up_then_live_in_order_and_reads_say_their_revision() -> None:
    async with serving() as served, served.client() as admin:
        await admin.create_holder("nic0", "http://127.0.0.1:9/release")
        await admin.hold(NORMAL, "nic0", order=9)
        page = await admin._http.get(served.url + f"/v1/pages/{NORMAL}", headers=AUTH)
        assert page.headers["X-Pageholder-Revision"] == "2"
        # A watcher from 0 gets both revisions, then what happens after it connected.
        watcher = Collector(served.client(), since=0)
        await watcher.until(2)
        await admin.unset(NORMAL)
        await admin.hold(NORMAL + 1, "nic0")
        await admin.update_holder("nic0", description="a NIC")
        events = await watcher.until(5)
        assert revs(events) == [1, 2, 3, 4, 5]
        assert [e.type for e in events] == [
            "holder.created",
            "hold.created",
            "hold.unset",
            "hold.created",
            "holder.updated",
        ]
        assert events[1].holder == "nic0" and [(h.pfn, h.order) for h in events[1].holds] == [
            (NORMAL, 9)
        ]
        # Unchanged re-holds are no change: no revision.
        await admin.hold(NORMAL + 1, "nic0")
        assert served.registry.events.revision == 5
        # A watcher from now (no since) starts after 5 and misses nothing after.
        late = Collector(served.client(), types=["holder"])
        await subscribed(served.registry, 2)
        await admin.create_holder("balloon")
        got = await late.until(6)
        assert [(e.rev, e.type) for e in got] == [(6, "holder.created")]
        await watcher.stop()
        await late.stop()


async def test_a_batch_is_one_revision_in_parts_and_only_its_last_part_has_the_id() -> None:
    async with serving() as served, served.client() as admin:
        await admin.create_holder("balloon")
        n = MAX_EVENT_HOLDS + 100
        await admin.batch_set("balloon", ranges=[(NORMAL, n)])
        text = await read_stream(served.url, "id: 2", {"since": 1})
        got = frames(text)
        assert got[0] == {"id": "1", "retry": "1000"}  # where the stream starts
        parts = [json.loads(f["data"]) for f in got[1:]]
        assert [(p["rev"], p["part"], p["parts"], len(p["holds"])) for p in parts] == [
            (2, 1, 2, MAX_EVENT_HOLDS),
            (2, 2, 2, 100),
        ]
        assert "id" not in got[1] and got[2]["id"] == "2"
        assert got[2]["event"] == "hold.created"
        holds = [h["pfn"] for p in parts for h in p["holds"]]
        assert holds == list(range(NORMAL, NORMAL + n))


async def test_an_offline_is_going_offline_then_one_revision_of_releases_and_the_report() -> None:
    async with serving() as served, served.client() as admin:
        await admin.create_holder("nic0", "http://127.0.0.1:9/release")
        await admin.create_holder("gpu", "http://127.0.0.1:9/release")
        block = NORMAL // 32768
        await admin.hold(NORMAL, "nic0", order=9)
        await admin.hold(NORMAL + 1024, "gpu")
        watcher = Collector(served.client(), since=4)
        report = await admin.offline_block(block)
        await admin.online_block(block)
        events = await watcher.until(7)
        assert [(e.rev, e.type, e.holder, e.block) for e in events] == [
            (5, "block.going_offline", None, block),
            (6, "hold.released", "nic0", None),
            (6, "hold.released", "gpu", None),
            (6, "block.offline", None, block),
            (7, "block.online", None, block),
        ]
        assert events[3].report is not None
        assert events[3].report["released_holds"] == report.released_holds == 2
        assert events[3].report["webhook_calls"] == report.webhook_calls
        await watcher.stop()


async def test_since_older_than_the_retention_is_410_with_the_oldest_kept() -> None:
    async with serving(events_retention=3) as served, served.client() as admin:
        for name in ("a", "b", "c", "d", "e", "f"):
            await admin.create_holder(name)
        answer = await admin._http.get(served.url + "/v1/events?since=1", headers=AUTH)
        assert answer.status_code == 410
        assert answer.json()["code"] == "events_compacted"
        assert answer.json()["oldest_rev"] == 4
        with pytest.raises(EventsCompacted) as raised:
            async for _ in admin.watch(since=2):
                pass
        assert raised.value.oldest_rev == 4
        # From the oldest kept on, everything.
        watcher = Collector(served.client(), since=3)
        assert revs(await watcher.until(6)) == [4, 5, 6]
        # A revision from the future (a registry that lost its history) is 410 too.
        ahead = await admin._http.get(served.url + "/v1/events?since=99", headers=AUTH)
        assert ahead.status_code == 410 and ahead.json()["code"] == "events_compacted"
        bad = await admin._http.get(served.url + "/v1/events?types=pages", headers=AUTH)
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
        await watcher.stop()


@pytest.mark.parametrize("plain", [False, True], ids=["serve-protocol", "plain-uvicorn"])
async def test_a_reader_that_never_reads_overflows_and_costs_a_bounded_buffer(plain: bool) -> None:
    limit = 32
    async with serving(events_buffer=limit, plain=plain) as served:
        async with served.client() as admin:
            await admin.create_holder("balloon")
            log = served.registry.events
            # A subscriber that sends its request and then never reads a byte.
            stuck = stuck_subscriber(served.port)
            # One beside it (holder events only, to keep the test cheap) must go on.
            healthy = Collector(served.client(), types=["holder"])
            await subscribed(served.registry, 2)
            # Revisions of 16 parts (~1.8 MB of SSE each): more than the socket buffers
            # hold, so the stuck stream's sender blocks and its buffer fills up.
            for _ in range(4):
                await admin.batch_set("balloon", ranges=[(NORMAL, 65536)])
                await admin.batch_unset("balloon", ranges=[(NORMAL, 65536)])
            # The stuck subscriber overflowed and was dropped; what it had waiting never
            # passed the limit plus the one revision that tipped it over.
            assert log.overflows == 1 and log.watchers == 1
            assert limit < log.peak_waiting <= limit + 16
            # The registry went on: the other subscriber gets the next change.
            await admin.create_holder("nic0")
            assert [e.type for e in await healthy.until(log.revision)] == ["holder.created"]
            # Once it reads, it is told, and the server ends the response and closes the
            # connection, after no more than the socket buffers' worth of bytes plus the
            # limit's.
            stuck.setblocking(False)  # the server runs on this event loop: never block it
            loop = asyncio.get_running_loop()
            received = b""
            async with asyncio.timeout(DEADLINE_S):
                while chunk := await loop.sock_recv(stuck, 1 << 20):
                    received += chunk
                    assert len(received) < 32 << 20
            stuck.close()
            assert received.endswith(b"\r\n0\r\n\r\n")
            assert b"event: overflow\n" in received[-1000:]
            await healthy.stop()


async def test_a_holder_token_sees_its_own_holds_and_every_block_event() -> None:
    async with serving() as served, served.client() as admin:
        nic0 = await admin.create_holder("nic0", "http://127.0.0.1:9/release")
        await admin.create_holder("gpu", "http://127.0.0.1:9/release")
        mine = Collector(served.client(nic0.token), since=0)
        everything = Collector(served.client(), since=0)
        await admin.hold(NORMAL, "nic0")
        await admin.hold(NORMAL + 2, "gpu")
        await admin.hold(NORMAL, "gpu", overwrite=True)  # takes nic0's page: nic0 sees it
        await admin.update_holder("gpu", description="x")
        block = (NORMAL + 32768) // 32768
        await admin.offline_block(block)
        last = served.registry.events.revision
        await everything.until(last)
        seen = await mine.until(last)
        assert [(e.type, e.holder) for e in seen] == [
            ("holder.created", "nic0"),
            ("hold.created", "nic0"),
            ("hold.overwritten", "gpu"),
            ("block.going_offline", None),
            ("block.offline", None),
        ]
        assert seen[2].previous == ("nic0",)
        assert len(revs(everything.events)) == last
        # Its token is a holder's (not the admin's) for everything else too.
        async with served.client(nic0.token) as as_nic0:
            with pytest.raises(Forbidden):
                await as_nic0.delete_holder("gpu")
        await mine.stop()
        await everything.stop()


@pytest.mark.parametrize("plain", [False, True], ids=["serve-protocol", "plain-uvicorn"])
async def test_a_hundred_subscribers_each_get_every_revision_in_order(plain: bool) -> None:
    async with serving(plain=plain) as served, served.client() as admin:
        await admin.create_holder("nic0")
        watchers = [Collector(served.client(), since=1) for _ in range(100)]
        for i in range(50):
            await admin.hold(NORMAL + i, "nic0")
        last = served.registry.events.revision
        assert last == 51
        for watcher in watchers:
            assert revs(await watcher.until(last)) == list(range(2, last + 1))
        for watcher in watchers:
            await watcher.stop()


async def test_watch_resumes_after_a_cut_connection_without_gaps_or_duplicates() -> None:
    async with serving() as served, served.client() as admin:
        await admin.create_holder("nic0")
        proxy = await Proxy(served.port).start()
        watcher = Collector(served.client().__class__(proxy.url, TOKEN), since=0)
        try:
            await admin.hold(NORMAL, "nic0")
            await watcher.until(2)
            for round_ in range(3):
                proxy.cut()
                for i in range(5):  # changes while it is reconnecting
                    pfn = NORMAL + 1 + round_ * 5 + i
                    await admin.hold(pfn, "nic0")
            last = served.registry.events.revision
            events = await watcher.until(last)
            assert [e.rev for e in events] == list(range(1, last + 1))
            assert proxy.connections >= 4
        finally:
            await watcher.stop()
            await proxy.close()
