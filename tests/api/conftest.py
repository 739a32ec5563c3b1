"""An in-process service (httpx ASGITransport) with a scripted release handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from pageholder.service.api import create_app
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import FailureReason, Holder, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
NORMAL = 1 << 20


class ScriptedCaller:
    """Answers release calls by the holder's release_url path: /ok, /refuse, /hang."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[PageRef]]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer:
        self.calls.append((holder.name, list(pages)))
        if self.gate is not None:
            await self.gate.wait()
        url = holder.release_url or ""
        if url.endswith("/refuse"):
            return ReleaseAnswer.all_failed(pages, FailureReason.RELEASE_FAILED, "pinned by DMA")
        if url.endswith("/hang"):
            await asyncio.sleep(3600)
        return ReleaseAnswer.all_released(pages)


@dataclass
class Api:
    """The admin's client, the app's registry, and a way to act as a holder."""

    admin: httpx.AsyncClient
    registry: Registry
    caller: ScriptedCaller
    transport: httpx.ASGITransport
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None) -> httpx.AsyncClient:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(transport=self.transport, base_url="http://test", headers=headers)

    def as_holder(self, name: str) -> httpx.AsyncClient:
        return self.client(self.tokens[name])

    async def add_holder(
        self, name: str, url: str | None = "http://127.0.0.1:9/ok", **more: object
    ) -> dict[str, object]:
        body = {"name": name, "release_url": url, **more}
        response = await self.admin.post("/v1/holders", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        self.tokens[name] = str(created["token"])
        return created


async def start(
    layout: MemoryLayout | None = None, store: str | None = None
) -> AsyncIterator[Api]:
    """The app in-process: state in memory, or in PostgreSQL at ``store`` (the app then
    leads it: it is the only registry on that database)."""
    settings = Settings(data_dir=":memory:", admin_token=ADMIN_TOKEN, store=store)
    caller = ScriptedCaller()
    app = create_app(settings, layout=layout, release_caller=caller)
    async with app.router.lifespan_context(app):
        readiness = app.state.service.readiness
        await asyncio.wait_for(readiness.settled.wait(), 30)
        assert readiness.ready, readiness.detail()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as admin:
            yield Api(admin, app.state.service.registry, caller, transport)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for started in start():
        yield started


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert body["type"] == f"urn:pageholder:problem:{code}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    return body
