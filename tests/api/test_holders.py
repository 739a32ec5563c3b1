"""/v1/holders and the token rules."""

from __future__ import annotations

from .conftest import NORMAL, Api, assert_problem


async def test_register_a_holder_returns_its_secrets_once(api: Api) -> None:
    created = await api.add_holder("nic0", description="mlx0 RDMA")
    assert str(created["token"]).startswith("pht_")
    assert str(created["webhook_secret"]).startswith("whsec_")
    assert created["holds"] == 0 and created["release_url"] == "http://127.0.0.1:9/ok"
    shown = (await api.admin.get("/v1/holders/nic0")).json()
    assert "token" not in shown and "webhook_secret" not in shown
    assert shown["description"] == "mlx0 RDMA"


async def test_registration_is_checked(api: Api) -> None:
    await api.add_holder("nic0")
    response = await api.admin.post("/v1/holders", json={"name": "nic0"})
    assert_problem(response, 409, "holder_exists")
    for body in (
        {"name": "Bad Name"},
        {"name": "x", "timeout_s": 0},
        {"name": "x", "release_url": "ftp://127.0.0.1/x"},
        {"name": "x", "release_url": "http://169.254.169.254/latest"},
        {"name": "x", "colour": "blue"},
    ):
        problem = assert_problem(
            await api.admin.post("/v1/holders", json=body), 422, "invalid_request"
        )
        assert problem["detail"]
    assert [h["name"] for h in (await api.admin.get("/v1/holders")).json()["items"]] == ["nic0"]


async def test_holders_list_shows_what_each_holds(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("balloon", url=None)
    async with api.as_holder("nic0") as nic0:
        assert (await nic0.put(f"/v1/pages/{NORMAL}/hold", json={"order": 9})).status_code == 201
    items = {h["name"]: h for h in (await api.admin.get("/v1/holders")).json()["items"]}
    assert (items["nic0"]["holds"], items["nic0"]["held_pages"]) == (1, 512)
    assert items["balloon"]["release_url"] is None
    assert_problem(await api.admin.get("/v1/holders/nobody"), 404, "holder_not_found")


async def test_a_holder_may_change_itself_but_not_others(api: Api) -> None:
    await api.add_holder("nic0")
    await api.add_holder("gpu0")
    async with api.as_holder("nic0") as nic0:
        response = await nic0.patch("/v1/holders/nic0", json={"timeout_s": 2.5})
        assert response.status_code == 200 and response.json()["timeout_s"] == 2.5
        assert_problem(
            await nic0.patch("/v1/holders/gpu0", json={"timeout_s": 1}), 403, "forbidden"
        )
        assert_problem(
            await nic0.patch("/v1/holders/nic0", json={"timeout_s": 99}), 422, "invalid_request"
        )
        assert_problem(await nic0.post("/v1/holders", json={"name": "x"}), 403, "forbidden")
    response = await api.admin.patch("/v1/holders/nic0", json={"release_url": None})
    assert response.json()["release_url"] is None
    assert_problem(await api.admin.patch("/v1/holders/nobody", json={}), 404, "holder_not_found")


async def test_deleting_a_holder_with_holds_needs_the_admins_force(api: Api) -> None:
    await api.add_holder("nic0")
    async with api.as_holder("nic0") as nic0:
        await nic0.put(f"/v1/pages/{NORMAL}/hold")
        problem = assert_problem(await nic0.delete("/v1/holders/nic0"), 409, "holder_has_holds")
        assert problem["holds"] == 1
        assert_problem(await nic0.delete("/v1/holders/nic0?force=true"), 403, "forbidden")
    assert (await api.admin.delete("/v1/holders/nic0?force=true")).status_code == 204
    assert (await api.admin.get(f"/v1/pages/{NORMAL}")).json()["held"] is False
    # its token is dead with it
    async with api.client(api.tokens["nic0"]) as gone:
        assert_problem(await gone.get("/v1/zones"), 401, "unauthorized")


async def test_tokens(api: Api) -> None:
    async with api.client(None) as anonymous:
        problem = assert_problem(await anonymous.get("/v1/holders"), 401, "unauthorized")
        assert "missing" in str(problem["detail"])
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/openapi.json")).status_code == 200
        assert (await anonymous.get("/docs")).status_code == 200
    async with api.client("not-a-token") as stranger:
        response = await stranger.get("/v1/zones")
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_release_urls_are_not_readable_by_other_holders(api: Api) -> None:
    # A release URL may carry a secret (?token=...): holder gpu0 must not read nic0's.
    await api.add_holder("nic0", url="http://127.0.0.1:9/release?token=s3cr3t")
    await api.add_holder("gpu0", url="http://127.0.0.1:10/gpu")
    await api.add_holder("balloon", url=None)
    async with api.as_holder("gpu0") as gpu0:
        listed = {h["name"]: h for h in (await gpu0.get("/v1/holders")).json()["items"]}
        one = (await gpu0.get("/v1/holders/nic0")).json()
        mine = (await gpu0.patch("/v1/holders/gpu0", json={"timeout_s": 3})).json()
    assert "s3cr3t" not in str(listed) + str(one)
    assert listed["nic0"]["release_url"] is None and listed["nic0"]["has_release_handler"]
    assert one["release_url"] is None and one["has_release_handler"] is True
    assert listed["balloon"]["release_url"] is None
    assert listed["balloon"]["has_release_handler"] is False
    # its own URL, it may read
    assert listed["gpu0"]["release_url"] == "http://127.0.0.1:10/gpu"
    assert mine["release_url"] == "http://127.0.0.1:10/gpu" and mine["has_release_handler"]
    async with api.as_holder("nic0") as nic0:
        own = (await nic0.get("/v1/holders/nic0")).json()
        other = (await nic0.get("/v1/holders/gpu0")).json()
    assert own["release_url"] == "http://127.0.0.1:9/release?token=s3cr3t"
    assert other["release_url"] is None and other["has_release_handler"] is True
    # the admin sees every URL
    by_admin = {h["name"]: h for h in (await api.admin.get("/v1/holders")).json()["items"]}
    assert by_admin["nic0"]["release_url"] == "http://127.0.0.1:9/release?token=s3cr3t"
    assert by_admin["gpu0"]["release_url"] == "http://127.0.0.1:10/gpu"
    assert by_admin["balloon"]["has_release_handler"] is False
