"""Real webhook receivers on loopback, called by the registry's real webhook caller.

The registry app runs in-process (httpx ASGITransport); its release calls go over real
sockets to ``ReleaseReceiver``s served by uvicorn on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import pytest

from pageholder.client import (
    ReleaseReceiver,
    ReleaseRequest,
    ReleaseResult,
    RunningReceiver,
    serve_receiver,
)
from pageholder.service.api import create_app
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings

ADMIN_TOKEN = "integration-admin-token-0123456789"
NORMAL = 1 << 20
BLOCK_PAGES = 32768

Behaviour = Callable[[ReleaseRequest], Awaitable[ReleaseResult | None] | ReleaseResult | None]


def cooperative(request: ReleaseRequest) -> None:
    return None


@dataclass
class Harness:
    admin: httpx.AsyncClient
    registry: Registry
    stack: AsyncExitStack
    receivers: dict[str, ReleaseReceiver] = field(default_factory=dict)
    running: dict[str, RunningReceiver] = field(default_factory=dict)

    async def holder(
        self, name: str, behaviour: Behaviour | None = cooperative, timeout_s: float = 5.0
    ) -> ReleaseReceiver | None:
        """Register a holder; unless ``behaviour`` is None, give it a real receiver."""
        created = await self.admin.post("/v1/holders", json={"name": name, "timeout_s": timeout_s})
        assert created.status_code == 201, created.text
        if behaviour is None:
            return None
        receiver = ReleaseReceiver(str(created.json()["webhook_secret"]), behaviour)
        running = await serve_receiver(receiver)
        self.stack.push_async_callback(running.close)
        patched = await self.admin.patch(f"/v1/holders/{name}", json={"release_url": running.url})
        assert patched.status_code == 200, patched.text
        self.receivers[name] = receiver
        self.running[name] = running
        return receiver

    async def hold(self, name: str, pfn: int, order: int = 0) -> None:
        response = await self.admin.put(
            f"/v1/pages/{pfn}/hold", json={"holder": name, "order": order}
        )
        assert response.status_code == 201, response.text

    async def hold_range(self, name: str, start: int, nr_pages: int) -> None:
        body = {
            "holder": name,
            "atomic": True,
            "ranges": [{"start_pfn": start, "nr_pages": nr_pages}],
        }
        response = await self.admin.post("/v1/holds/batch-set", json=body)
        assert response.status_code == 200, response.text

    async def offline(self, block: int, deadline_s: float = 10.0) -> httpx.Response:
        return await self.admin.post(f"/v1/blocks/{block}/offline", json={"deadline_s": deadline_s})

    async def page(self, pfn: int) -> dict[str, object]:
        page: dict[str, object] = (await self.admin.get(f"/v1/pages/{pfn}")).json()
        return page

    async def block(self, block: int) -> dict[str, object]:
        info: dict[str, object] = (await self.admin.get(f"/v1/blocks/{block}")).json()
        return info


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    app = create_app(Settings(data_dir=":memory:", admin_token=ADMIN_TOKEN))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        admin = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://registry",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=60,
            )
        )
        yield Harness(admin, app.state.service.registry, stack)
