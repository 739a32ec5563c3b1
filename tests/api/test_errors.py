"""Problem documents everywhere, and one table that maps every core code."""

from __future__ import annotations

import pytest

from pageholder.service.api.problems import STATUS
from pageholder.service.core import errors

from .conftest import NORMAL, Api, assert_problem


def test_every_core_error_code_is_mapped() -> None:
    codes = {cls.code for cls in errors.all_error_classes()}
    assert codes <= STATUS.keys(), codes - STATUS.keys()
    assert len(codes) == len(errors.all_error_classes()), "two error classes share a code"


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert_problem(await api.admin.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(await api.admin.delete("/v1/zones"), 405, "method_not_allowed")


async def test_a_body_over_eight_mib_is_refused(api: Api) -> None:
    await api.add_holder("nic0")
    big = b'{"holder": "nic0", "pad": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    response = await api.admin.put(f"/v1/pages/{NORMAL}/hold", content=big)
    assert_problem(response, 413, "payload_too_large")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(9):
            yield b"x" * (1024 * 1024)

    streamed = await api.admin.put(f"/v1/pages/{NORMAL}/hold", content=chunks())
    assert_problem(streamed, 413, "payload_too_large")
    assert (await api.admin.get(f"/v1/pages/{NORMAL}")).json()["held"] is False


async def test_a_crash_is_a_500_without_a_trace(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(pfn: int) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.registry, "lookup", broken)
    response = await api.admin.get(f"/v1/pages/{NORMAL}")
    problem = assert_problem(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert problem["detail"]


async def test_health_and_metrics(api: Api) -> None:
    async with api.client(None) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/readyz")).json() == {"status": "ok"}
        assert_problem(await anonymous.get("/metrics"), 401, "unauthorized")
    await api.add_holder("nic0")
    await api.admin.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0", "order": 3})
    text = (await api.admin.get("/metrics")).text
    assert 'pageholder_holds{zone="0/Normal"} 1.0' in text
    assert 'pageholder_held_pages{zone="0/Normal"} 8.0' in text
    assert (
        'pageholder_requests_total{method="PUT",route="/v1/pages/{pfn}/hold",status="201"}' in text
    )
