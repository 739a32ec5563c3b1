"""/v1/pages: lookup, hold, unset, release."""

from __future__ import annotations

import asyncio

from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import BlockState

from .conftest import NORMAL, Api, assert_problem, start


async def test_a_free_page(api: Api) -> None:
    page = (await api.admin.get(f"/v1/pages/{NORMAL + 3}")).json()
    assert page == {
        "pfn": NORMAL + 3,
        "node": 0,
        "zone": "0/Normal",
        "block": 32,
        "held": False,
        "holder": None,
        "head_pfn": None,
        "order": None,
        "state": None,
        "since": None,
    }
    assert_problem(await api.admin.get("/v1/pages/0"), 404, "pfn_not_found")
    assert_problem(await api.admin.get(f"/v1/pages/{1 << 22}"), 404, "pfn_not_found")
    assert_problem(await api.admin.get("/v1/pages/-1"), 422, "invalid_request")
    assert_problem(await api.admin.get("/v1/pages/abc"), 422, "invalid_request")


async def test_hold_lookup_unset(api: Api) -> None:
    await api.add_holder("nic0")
    async with api.as_holder("nic0") as nic0:
        response = await nic0.put(f"/v1/pages/{NORMAL + 512}/hold", json={"order": 9})
        assert response.status_code == 201
        hold = response.json()
        assert (hold["result"], hold["holder"], hold["order"], hold["state"]) == (
            "created",
            "nic0",
            9,
            "held",
        )
        again = await nic0.put(f"/v1/pages/{NORMAL + 512}/hold", json={"order": 9})
        assert again.status_code == 200 and again.json()["result"] == "unchanged"
        page = (await nic0.get(f"/v1/pages/{NORMAL + 1000}")).json()
        assert (page["held"], page["holder"], page["head_pfn"], page["order"]) == (
            True,
            "nic0",
            NORMAL + 512,
            9,
        )
        assert page["since"] == hold["since"]
        problem = assert_problem(
            await nic0.delete(f"/v1/pages/{NORMAL + 1000}/hold"), 409, "not_head"
        )
        assert problem["head_pfn"] == NORMAL + 512
        assert (await nic0.delete(f"/v1/pages/{NORMAL + 512}/hold")).status_code == 204
        assert_problem(await nic0.delete(f"/v1/pages/{NORMAL + 512}/hold"), 404, "page_not_held")


async def test_hold_conflicts_and_overwrite(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    async with api.as_holder("nic0") as nic0, api.as_holder("gpu0") as gpu0:
        await nic0.put(f"/v1/pages/{NORMAL}/hold")
        problem = assert_problem(await gpu0.put(f"/v1/pages/{NORMAL}/hold"), 409, "page_held")
        assert (problem["holder"], problem["head_pfn"], problem["order"]) == ("nic0", NORMAL, 0)
        response = await gpu0.put(f"/v1/pages/{NORMAL}/hold", json={"overwrite": True})
        assert_problem(response, 403, "forbidden")
        assert_problem(await gpu0.delete(f"/v1/pages/{NORMAL}/hold"), 403, "forbidden")
        response = await gpu0.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0"})
        assert_problem(response, 403, "forbidden")
    response = await api.admin.put(
        f"/v1/pages/{NORMAL}/hold", json={"holder": "gpu0", "order": 1, "overwrite": True}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["result"], body["holder"], body["previous"]) == ("overwritten", "gpu0", "nic0")
    assert [h["holder"] for h in body["replaced"]] == ["nic0"]


async def test_hold_input_is_checked(api: Api) -> None:
    await api.add_holder("nic0")
    admin = api.admin
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL + 1}/hold", json={"holder": "nic0", "order": 1}),
        422,
        "misaligned",
    )
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 19}),
        422,
        "invalid_request",
    )
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "size": 1}),
        422,
        "invalid_request",
    )
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": "x"}),
        422,
        "invalid_request",
    )
    assert_problem(await admin.put(f"/v1/pages/{NORMAL}/hold", json={}), 422, "invalid_request")
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nobody"}),
        404,
        "holder_not_found",
    )
    assert_problem(
        await admin.put("/v1/pages/0/hold", json={"holder": "nic0"}), 404, "pfn_not_found"
    )
    assert_problem(
        await admin.put(f"/v1/pages/{NORMAL}/hold", content=b"{not json"), 422, "invalid_request"
    )
    assert (await admin.get(f"/v1/pages/{NORMAL}")).json()["held"] is False


async def test_a_hold_that_crosses_zones() -> None:
    layout = MemoryLayout.from_toml_text(
        "block_size = 4194304\n"
        '[[zone]]\nnode = 0\nname = "DMA32"\nstart_pfn = 0\nspanned_pages = 1000\n'
        '[[zone]]\nnode = 0\nname = "Normal"\nstart_pfn = 1000\nspanned_pages = 4000\n'
    )
    async for api in start(layout):
        await api.add_holder("nic0")
        response = await api.admin.put("/v1/pages/992/hold", json={"holder": "nic0", "order": 4})
        assert_problem(response, 422, "crosses_zone")


async def test_no_hold_in_a_block_that_is_not_online(api: Api) -> None:
    await api.add_holder("nic0")
    api.registry.blocks._set(33, BlockState.GOING_OFFLINE)
    response = await api.admin.put(f"/v1/pages/{33 * 32768}/hold", json={"holder": "nic0"})
    problem = assert_problem(response, 409, "block_not_online")
    assert (problem["block"], problem["state"]) == (33, "going_offline")


async def test_release(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("stuck", url="http://127.0.0.1:9/refuse")
    await api.add_holder("slow", url="http://127.0.0.1:9/hang", timeout_s=0.2)
    await api.add_holder("balloon", url=None)
    for i, name in enumerate(("nic0", "stuck", "slow", "balloon")):
        response = await api.admin.put(
            f"/v1/pages/{NORMAL + 64 * i}/hold", json={"holder": name, "order": 6}
        )
        assert response.status_code == 201
    released = await api.admin.post(f"/v1/pages/{NORMAL + 5}/release")
    assert released.status_code == 200
    assert released.json() == {
        "result": "released",
        "holder": "nic0",
        "pfn": NORMAL,
        "order": 6,
        "webhook_calls": 1,
    }
    assert (await api.admin.get(f"/v1/pages/{NORMAL}")).json()["held"] is False
    problem = assert_problem(
        await api.admin.post(f"/v1/pages/{NORMAL + 64}/release"), 502, "release_failed"
    )
    assert "pinned by DMA" in str(problem["detail"]) and problem["holder"] == "stuck"
    assert_problem(
        await api.admin.post(f"/v1/pages/{NORMAL + 128}/release"), 504, "release_timeout"
    )
    assert_problem(
        await api.admin.post(f"/v1/pages/{NORMAL + 192}/release"), 409, "no_release_handler"
    )
    assert_problem(await api.admin.post(f"/v1/pages/{NORMAL}/release"), 404, "page_not_held")
    for pfn in (NORMAL + 64, NORMAL + 128, NORMAL + 192):
        assert (await api.admin.get(f"/v1/pages/{pfn}")).json()["state"] == "held"
    stuck = (await api.admin.get("/v1/holders/stuck")).json()
    assert "pinned by DMA" in stuck["last_error"]
    async with api.as_holder("nic0") as nic0:
        assert_problem(await nic0.post(f"/v1/pages/{NORMAL + 64}/release"), 403, "forbidden")


async def test_twenty_concurrent_releases_make_one_call(api: Api) -> None:
    await api.add_holder("nic0")
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 4})
    api.caller.gate = asyncio.Event()
    requests = [
        asyncio.create_task(api.admin.post(f"/v1/pages/{NORMAL + i % 16}/release"))
        for i in range(20)
    ]
    await asyncio.sleep(0.05)
    page = (await api.admin.get(f"/v1/pages/{NORMAL}")).json()
    assert page["state"] == "releasing"
    assert_problem(await api.admin.delete(f"/v1/pages/{NORMAL}/hold"), 409, "page_releasing")
    api.caller.gate.set()
    responses = await asyncio.gather(*requests)
    assert {r.status_code for r in responses} == {200}
    assert len(api.caller.calls) == 1
