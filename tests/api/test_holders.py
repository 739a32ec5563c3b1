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
