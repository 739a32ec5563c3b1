"""A holder attacking through its release URL, against real ``pageholder serve`` processes.

The "metadata service" is a receiver on 127.0.0.1 that answers anything with a secret;
the registry under attack runs with loopback and private targets disallowed, so for it
127.0.0.1 is as forbidden as 169.254.169.254 (which a test cannot listen on).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .conftest import BLOCK_PAGES, NORMAL
from .servers import Server, running_server

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "attack-test-admin-token-0123456789"
METADATA = "AKIA-SECRET-ACCESS-KEY-FROM-THE-METADATA-SERVICE"
STRICT = {"PAGEHOLDER_WEBHOOK_ALLOW_LOOPBACK": "false", "PAGEHOLDER_WEBHOOK_ALLOW_PRIVATE": "false"}


@dataclass
class Target:
    port: int = 0
    calls: list[str] = field(default_factory=list)

    def build(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            self.calls.append(request.url.path)
            return Response(METADATA, status_code=500)

        async def storm(request: Request) -> Response:
            self.calls.append(request.url.path)
            return Response("busy", status_code=503, headers={"retry-after": "0"})

        return Starlette(
            routes=[
                Route("/latest/meta-data/", metadata, methods=["POST"]),
                Route("/storm", storm, methods=["POST"]),
            ]
        )


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    rcv = Target()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    rcv.port = sock.getsockname()[1]
    config = uvicorn.Config(rcv.build(), lifespan="off", ws="none", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 5
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "target did not start"
        await asyncio.sleep(0.005)
    try:
        yield rcv
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
        sock.close()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("strict"), admin_token=ADMIN_TOKEN, env=STRICT
    ) as running:
        yield running


def client(server: Server, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, trust_env=False, timeout=10)


async def register(admin: httpx.AsyncClient, name: str, url: str | None) -> str:
    response = await admin.post("/v1/holders", json={"name": name, "release_url": url})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def test_ssrf_through_the_release_url_is_refused(
    strict_server: Server, target: Target
) -> None:
    async with client(strict_server, ADMIN_TOKEN) as admin:
        token = await register(admin, "evil", None)
        async with client(strict_server, token) as evil:
            # Spellings of a forbidden address: refused when set.
            for url in (
                "http://169\uff0e254\uff0e169\uff0e254/latest/meta-data/",
                "http://169\u3002254\u3002169\u3002254/latest/meta-data/",
                "http://169\uff61254\uff61169\uff61254/latest/meta-data/",
                f"http://127\uff0e0\uff0e0\uff0e1:{target.port}/latest/meta-data/",
                "http://10\uff0e1\uff0e2\uff0e3/latest/meta-data/",
                "http://[2002:a9fe:a9fe::]/latest/meta-data/",
                "http://[::ffff:169.254.169.254]/latest/meta-data/",
            ):
                response = await evil.patch("/v1/holders/evil", json={"release_url": url})
                assert response.status_code == 422, (url, response.text)
                assert response.json()["code"] == "invalid_request"
            # A name is not resolved when set; it is judged by its addresses when called.
            url = f"http://localhost:{target.port}/latest/meta-data/"
            response = await evil.patch("/v1/holders/evil", json={"release_url": url})
            assert response.status_code == 200, response.text
            response = await evil.put(f"/v1/pages/{NORMAL}/hold")
            assert response.status_code == 201, response.text
            released = await admin.post(f"/v1/pages/{NORMAL}/release")
            own = (await evil.get("/v1/holders/evil")).json()
        page = (await admin.get(f"/v1/pages/{NORMAL}")).json()
    assert released.status_code == 502, released.text
    problem = released.json()
    assert problem["code"] == "release_failed"
    assert "address not allowed" in problem["detail"], problem
    assert "loopback, which is not allowed here" in problem["detail"], problem
    assert METADATA not in released.text
    assert target.calls == []  # nothing was ever sent to the forbidden address
    assert "address not allowed" in own["last_error"] and METADATA not in str(own)
    assert page["holder"] == "evil" and page["state"] == "held"  # nothing half-applied


async def test_retry_after_zero_storm_is_bounded(tmp_path: Path, target: Target) -> None:
    # Four holders answering "503, Retry-After: 0" to an offline with a 2 s deadline: a
    # handful of calls each (before the minimum retry interval: ~700 each in 20 s).
    block = NORMAL // BLOCK_PAGES
    with running_server(tmp_path, admin_token=ADMIN_TOKEN) as server:
        async with client(server, ADMIN_TOKEN) as admin:
            for i in range(4):
                token = await register(admin, f"busy{i}", f"http://127.0.0.1:{target.port}/storm")
                async with client(server, token) as busy:
                    response = await busy.put(f"/v1/pages/{NORMAL + i}/hold")
                    assert response.status_code == 201, response.text
            started = time.monotonic()
            response = await admin.post(f"/v1/blocks/{block}/offline", json={"deadline_s": 2})
            took = time.monotonic() - started
    assert response.status_code == 409, response.text
    reasons = {f["reason"] for f in response.json()["report"]["failures"]}
    assert reasons == {"deadline_exceeded"}, response.text
    assert took < 5
    assert 4 <= len(target.calls) <= 4 * 7, len(target.calls)
