"""/v1/holds/batch-set, batch-unset and the paged hold listing."""

from __future__ import annotations

import asyncio

from .conftest import NORMAL, Api, assert_problem


async def test_batch_set_answers_each_entry(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    await api.admin.put(f"/v1/pages/{NORMAL + 600}/hold", json={"holder": "gpu0"})
    body = {
        "holder": "nic0",
        "pages": [{"pfn": NORMAL, "order": 9}, {"pfn": NORMAL + 513, "order": 1}, {"pfn": 0}],
        "ranges": [{"start_pfn": NORMAL + 598, "nr_pages": 3}],
    }
    results = (await api.admin.post("/v1/holds/batch-set", json=body)).json()["results"]
    assert [(r["pfn"], r["status"], r.get("code")) for r in results] == [
        (NORMAL, "created", None),
        (NORMAL + 513, "error", "misaligned"),
        (0, "error", "pfn_not_found"),
        (NORMAL + 598, "created", None),
        (NORMAL + 599, "created", None),
        (NORMAL + 600, "error", "page_held"),
    ]
    nic0 = (await api.admin.get("/v1/holders/nic0")).json()
    assert (nic0["holds"], nic0["held_pages"]) == (3, 514)
    again = (await api.admin.post("/v1/holds/batch-set", json=body)).json()["results"]
    assert again[0]["status"] == "unchanged"


async def test_an_atomic_batch_is_all_or_nothing(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    await api.admin.put(f"/v1/pages/{NORMAL + 100}/hold", json={"holder": "gpu0"})
    body = {
        "holder": "nic0",
        "atomic": True,
        "overwrite": False,
        "ranges": [{"start_pfn": NORMAL, "nr_pages": 200}],
        "pages": [{"pfn": 4096, "order": 3}],
    }
    problem = assert_problem(
        await api.admin.post("/v1/holds/batch-set", json=body), 409, "page_held"
    )
    assert (problem["holder"], problem["pfn"]) == ("gpu0", NORMAL + 100)
    listing = (await api.admin.get("/v1/pages", params={"holder": "nic0"})).json()
    assert listing["items"] == []
    # with overwrite (the admin may), it all goes through and the gpu0 hold is replaced
    body["overwrite"] = True
    results = (await api.admin.post("/v1/holds/batch-set", json=body)).json()["results"]
    assert {r["status"] for r in results} == {"created", "overwritten"}
    assert (await api.admin.get("/v1/holders/gpu0")).json()["holds"] == 0
    # an atomic overwrite that fails half-way restores what it replaced
    await api.admin.put(f"/v1/pages/{NORMAL + 1000}/hold", json={"holder": "gpu0"})
    body = {
        "holder": "gpu0",
        "atomic": True,
        "overwrite": True,
        "pages": [{"pfn": NORMAL, "order": 7}, {"pfn": NORMAL + 1001, "order": 1}],
    }
    assert_problem(await api.admin.post("/v1/holds/batch-set", json=body), 422, "misaligned")
    page = (await api.admin.get(f"/v1/pages/{NORMAL + 5}")).json()
    assert (page["holder"], page["order"]) == ("nic0", 0)
    nic0 = (await api.admin.get("/v1/holders/nic0")).json()
    assert (nic0["holds"], nic0["held_pages"]) == (201, 208)
    for zh in api.registry.zones:
        zh.tree._check()


async def test_batch_limits_and_rights(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    too_many = {"holder": "nic0", "ranges": [{"start_pfn": NORMAL, "nr_pages": 65537}]}
    assert_problem(
        await api.admin.post("/v1/holds/batch-set", json=too_many), 413, "payload_too_large"
    )
    async with api.as_holder("gpu0") as gpu0:
        body = {"holder": "nic0", "pages": [{"pfn": NORMAL}]}
        assert_problem(await gpu0.post("/v1/holds/batch-set", json=body), 403, "forbidden")
        assert_problem(await gpu0.post("/v1/holds/batch-unset", json=body), 403, "forbidden")
    assert_problem(
        await api.admin.post("/v1/holds/batch-set", json={"pages": []}), 422, "invalid_request"
    )
    bad = {"holder": "nic0", "pages": [{"pfn": -1}]}
    assert_problem(await api.admin.post("/v1/holds/batch-set", json=bad), 422, "invalid_request")


async def test_batch_unset(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    await api.admin.post(
        "/v1/holds/batch-set",
        json={"holder": "nic0", "ranges": [{"start_pfn": NORMAL, "nr_pages": 4}]},
    )
    await api.admin.put(f"/v1/pages/{NORMAL + 8}/hold", json={"holder": "gpu0", "order": 3})
    async with api.as_holder("nic0") as nic0:
        body = {
            "ranges": [{"start_pfn": NORMAL, "nr_pages": 2}],
            "pages": [{"pfn": NORMAL + 8}, {"pfn": NORMAL + 9}, {"pfn": NORMAL + 64}],
        }
        results = (await nic0.post("/v1/holds/batch-unset", json=body)).json()["results"]
    # pages first, then the ranges
    assert [(r["status"], r.get("code")) for r in results] == [
        ("error", "forbidden"),
        ("error", "not_head"),
        ("error", "page_not_held"),
        ("unset", None),
        ("unset", None),
    ]
    atomic = {"atomic": True, "pages": [{"pfn": NORMAL + 2}, {"pfn": NORMAL + 64}]}
    assert_problem(await api.admin.post("/v1/holds/batch-unset", json=atomic), 404, "page_not_held")
    assert (await api.admin.get(f"/v1/pages/{NORMAL + 2}")).json()["held"] is True


async def test_two_atomic_batches_over_the_same_zones_do_not_deadlock(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    one = {"holder": "nic0", "atomic": True, "pages": [{"pfn": NORMAL}, {"pfn": 4096}]}
    two = {"holder": "gpu0", "atomic": True, "pages": [{"pfn": 4097}, {"pfn": NORMAL + 1}]}
    async with asyncio.timeout(5):
        answers = await asyncio.gather(
            *(api.admin.post("/v1/holds/batch-set", json=b) for b in (one, two) * 10)
        )
    assert all(a.status_code == 200 for a in answers)


async def test_listing_holds_page_by_page(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    await api.admin.put("/v1/pages/4096/hold", json={"holder": "gpu0", "order": 12})
    await api.admin.post(
        "/v1/holds/batch-set",
        json={"holder": "nic0", "ranges": [{"start_pfn": NORMAL, "nr_pages": 25}]},
    )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"start": 4100, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = (await api.admin.get("/v1/pages", params=params)).json()
        pages += 1
        seen += [h["pfn"] for h in page["items"]]
        if pages == 2:  # holds change between pages: new ones after the cursor, and before
            await api.admin.put(f"/v1/pages/{NORMAL + 30}/hold", json={"holder": "gpu0"})
            await api.admin.put("/v1/pages/4095/hold", json={"holder": "gpu0"})
            await api.admin.delete(f"/v1/pages/{NORMAL + 20}/hold")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # the order-12 hold at 4096 covers start=4100: listed first, once
    expected = [4096] + [NORMAL + i for i in range(25) if i != 20] + [NORMAL + 30]
    assert seen == expected
    only = (await api.admin.get("/v1/pages", params={"holder": "gpu0", "end": NORMAL})).json()
    assert [h["pfn"] for h in only["items"]] == [4095, 4096]
    assert_problem(await api.admin.get("/v1/pages", params={"cursor": "x"}), 422, "invalid_request")
    assert_problem(
        await api.admin.get("/v1/pages", params={"start": 9, "end": 3}), 422, "invalid_request"
    )
    assert_problem(
        await api.admin.get("/v1/pages", params={"holder": "nobody"}), 404, "holder_not_found"
    )
