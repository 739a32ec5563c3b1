"""Holder leases over HTTP: views, keepalive, reclaim, orphaned reads, codes, metrics."""

from __future__ import annotations

import time

from pageholder.service.core.model import Holder
from tests.api.conftest import NORMAL, Api, assert_problem


def expire(holder: Holder) -> None:
    """Run the holder's lease out now (as if it had sent no keepalive for ttl_s)."""
    assert holder.lease is not None
    holder.lease.deadline = time.monotonic() - 0.001


async def test_a_holder_with_a_lease_shows_it(api: Api) -> None:
    created = await api.add_holder("nic0", lease_ttl_s=30, on_expiry="reclaim")
    assert created["lease_ttl_s"] == 30 and created["on_expiry"] == "reclaim"
    lease = created["lease"]
    assert isinstance(lease, dict) and lease["state"] == "live" and lease["ttl_s"] == 30
    plain = await api.add_holder("gpu0")
    assert (plain["lease"], plain["lease_ttl_s"], plain["on_expiry"]) == (None, None, "keep")
    for bad in ({"lease_ttl_s": 0.5}, {"lease_ttl_s": 3601}, {"on_expiry": "drop"}):
        response = await api.admin.post("/v1/holders", json={"name": "bad0", **bad})
        assert_problem(response, 422, "invalid_request")
    patched = (await api.admin.patch("/v1/holders/gpu0", json={"lease_ttl_s": 5})).json()
    assert patched["lease"]["state"] == "live"
    cleared = (await api.admin.patch("/v1/holders/nic0", json={"lease_ttl_s": None})).json()
    assert (cleared["lease"], cleared["on_expiry"]) == (None, "reclaim")


async def test_keepalive_renews_revives_and_is_self_or_admin(api: Api) -> None:
    await api.add_holder("nic0", lease_ttl_s=10)
    await api.add_holder("gpu0")
    async with api.as_holder("nic0") as nic0, api.as_holder("gpu0") as gpu0:
        answer = await nic0.post("/v1/holders/nic0/keepalive")
        assert answer.status_code == 200 and answer.json()["state"] == "live"
        assert answer.json()["ttl_s"] == 10
        assert_problem(await gpu0.post("/v1/holders/nic0/keepalive"), 403, "forbidden")
        assert_problem(await gpu0.post("/v1/holders/gpu0/keepalive"), 409, "no_lease")
        await nic0.put(f"/v1/pages/{NORMAL}/hold", json={})
        expire(api.registry.holder("nic0"))
        assert (await api.admin.get("/v1/holders/nic0")).json()["lease"]["state"] == "expired"
        assert (await nic0.get(f"/v1/pages/{NORMAL}")).json()["state"] == "orphaned"
        revived = await nic0.post("/v1/holders/nic0/keepalive")
        assert revived.json()["state"] == "live"
        assert (await nic0.get(f"/v1/pages/{NORMAL}")).json()["state"] == "held"
    assert (await api.admin.post("/v1/holders/nic0/keepalive")).status_code == 200
    assert_problem(await api.admin.post("/v1/holders/nope/keepalive"), 404, "holder_not_found")


async def test_orphaned_holds_in_reads_and_refused_holds(api: Api) -> None:
    await api.add_holder("nic0", lease_ttl_s=10)
    await api.add_holder("gpu0")
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 4})
    await api.admin.put(f"/v1/pages/{NORMAL + 16}/hold", json={"holder": "gpu0"})
    expire(api.registry.holder("nic0"))
    listed = (await api.admin.get("/v1/pages?state=orphaned")).json()["items"]
    assert [(h["pfn"], h["state"]) for h in listed] == [(NORMAL, "orphaned")]
    held = (await api.admin.get("/v1/pages?state=held")).json()["items"]
    assert [h["pfn"] for h in held] == [NORMAL + 16]
    assert_problem(await api.admin.get("/v1/pages?state=gone"), 422, "invalid_request")
    block = (await api.admin.get("/v1/blocks/32")).json()
    assert (block["held_pages"], block["orphaned_pages"]) == (17, 16)
    zones = {z["id"]: z for z in (await api.admin.get("/v1/zones")).json()["items"]}
    assert zones["0/Normal"]["orphaned_pages"] == 16 and zones["0/DMA32"]["orphaned_pages"] == 0
    body = assert_problem(
        await api.admin.put(f"/v1/pages/{NORMAL + 32}/hold", json={"holder": "nic0"}),
        409,
        "lease_expired",
    )
    assert body["holder"] == "nic0"
    batch = {"holder": "nic0", "pages": [{"pfn": NORMAL + 64}]}
    assert_problem(await api.admin.post("/v1/holds/batch-set", json=batch), 409, "lease_expired")
    assert (await api.admin.get(f"/v1/pages/{NORMAL + 64}")).json()["held"] is False


async def test_reclaim_is_for_expired_holders_only(api: Api) -> None:
    await api.add_holder("nic0", lease_ttl_s=10)
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 9})
    assert_problem(await api.admin.post("/v1/holders/nic0/reclaim"), 409, "lease_not_expired")
    async with api.as_holder("nic0") as nic0:
        assert_problem(await nic0.post("/v1/holders/nic0/reclaim"), 403, "forbidden")
    expire(api.registry.holder("nic0"))
    done = await api.admin.post("/v1/holders/nic0/reclaim")
    assert done.status_code == 200
    assert done.json() == {"reclaimed_holds": 1, "reclaimed_pages": 512}
    assert (await api.admin.get(f"/v1/pages/{NORMAL}")).json()["held"] is False
    metrics = (await api.admin.get("/metrics")).text
    assert 'pageholder_holders_by_lease{state="expired"} 1.0' in metrics
    assert "pageholder_lease_expirations_total 1.0" in metrics
    assert "pageholder_lease_reclaimed_pages_total 512.0" in metrics


async def test_offline_with_orphans(api: Api) -> None:
    await api.add_holder("dead0", "http://127.0.0.1:9/refuse", lease_ttl_s=10)
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "dead0"})
    expire(api.registry.holder("dead0"))
    failed = assert_problem(await api.admin.post("/v1/blocks/32/offline"), 409, "offline_failed")
    report = failed["report"]
    assert isinstance(report, dict)
    assert failed["block"] == report["block"] == 32 and report["state"] == "online"
    assert [f["reason"] for f in report["failures"]] == ["lease_expired"]
    assert report["reclaimed"] == []
    done = await api.admin.post("/v1/blocks/32/offline", json={"reclaim_orphans": True})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "offline"
    assert done.json()["reclaimed"] == [{"holder": "dead0", "pfn": NORMAL, "order": 0}]
