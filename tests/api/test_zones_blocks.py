"""/v1/zones and /v1/blocks (read-only)."""

from __future__ import annotations

from .conftest import NORMAL, Api, assert_problem


async def test_zones_count_what_is_held(api: Api) -> None:
    await api.add_holder("nic0")
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 9})
    await api.admin.put(f"/v1/pages/{4096}/hold", json={"holder": "nic0"})
    zones = (await api.admin.get("/v1/zones")).json()["items"]
    assert [(z["id"], z["start_pfn"], z["held_pages"], z["holds"]) for z in zones] == [
        ("0/DMA", 1, 0, 0),
        ("0/DMA32", 4096, 1, 1),
        ("0/Normal", NORMAL, 512, 1),
    ]


async def test_blocks_report_holds_and_removability(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("balloon", url=None)
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 9})
    await api.admin.put(f"/v1/pages/{NORMAL + 32768}/hold", json={"holder": "balloon"})
    block = (await api.admin.get("/v1/blocks/32")).json()
    assert block == {
        "id": 32,
        "start_pfn": NORMAL,
        "nr_pages": 32768,
        "node": 0,
        "zone": "0/Normal",
        "zones": ["0/Normal"],
        "state": "online",
        "held_pages": 512,
        "holds": 1,
        "removable": True,
        "orphaned_pages": 0,
    }
    assert (await api.admin.get("/v1/blocks/33")).json()["removable"] is False
    first = (await api.admin.get("/v1/blocks/0")).json()
    assert first["zones"] == ["0/DMA", "0/DMA32"]
    assert_problem(await api.admin.get("/v1/blocks/128"), 404, "block_not_found")


async def test_block_listing_filters_and_pages(api: Api) -> None:
    await api.add_holder("nic0")
    for block in (32, 40, 41, 100):
        await api.admin.put(f"/v1/pages/{block * 32768}/hold", json={"holder": "nic0"})
    held = (await api.admin.get("/v1/blocks?held=true")).json()
    assert [b["id"] for b in held["items"]] == [32, 40, 41, 100]
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"zone": "0/Normal", "limit": 30}
        if cursor:
            params["cursor"] = cursor
        page = (await api.admin.get("/v1/blocks", params=params)).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(32, 128))
    assert (await api.admin.get("/v1/blocks?state=offline")).json()["items"] == []
    assert_problem(await api.admin.get("/v1/blocks?zone=9/Nowhere"), 422, "invalid_request")
    assert_problem(await api.admin.get("/v1/blocks?cursor=zzz"), 422, "invalid_request")
    assert_problem(await api.admin.get("/v1/blocks?state=gone"), 422, "invalid_request")
