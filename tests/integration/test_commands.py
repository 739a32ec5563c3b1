"""The terminal commands and the README's example subsystem, against a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pageholder.client import ReleaseReceiver, serve_receiver

from .servers import Server, run_pageholder, running_server, server_env

pytestmark = pytest.mark.integration

TOKEN = "commands-admin-token-0123456789"
NORMAL = 1 << 20
EXAMPLE = Path(__file__).parents[2] / "examples" / "subsystem.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server"), admin_token=TOKEN) as running:
        yield running


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pageholder(*args, "--url", server.url, "--token", TOKEN)


def admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"})


def test_hold_owner_unset_and_one_line_errors(server: Server) -> None:
    with admin(server) as api:
        api.post("/v1/holders", json={"name": "cli0"})
    held = cli(server, "hold", str(NORMAL), "--holder", "cli0", "--order", "9")
    assert held.returncode == 0 and "created" in held.stdout
    owner = cli(server, "owner", str(NORMAL + 100))
    assert "held by cli0" in owner.stdout and "order-9" in owner.stdout
    as_json = json.loads(cli(server, "owner", str(NORMAL + 100), "--json").stdout)
    assert (as_json["holder"], as_json["head_pfn"]) == ("cli0", NORMAL)
    conflict = cli(server, "hold", str(NORMAL), "--holder", "cli0", "--order", "3")
    assert conflict.returncode == 1
    assert conflict.stderr.startswith("error:") and "(page_held)" in conflict.stderr
    assert len(conflict.stderr.strip().splitlines()) == 1 and "Traceback" not in conflict.stderr
    refused = cli(server, "release", str(NORMAL))
    assert refused.returncode == 1 and "no_release_handler" in refused.stderr
    listed = json.loads(cli(server, "holders", "--json").stdout)
    assert {"name": "cli0", "held_pages": 512}.items() <= next(
        h for h in listed if h["name"] == "cli0"
    ).items()
    blocks = cli(server, "blocks", "--held")
    assert "32" in blocks.stdout and "no" in blocks.stdout
    assert cli(server, "unset", str(NORMAL)).returncode == 0
    assert "is free" in cli(server, "owner", str(NORMAL)).stdout
    unreachable = run_pageholder("zones", "--url", "http://127.0.0.1:9", "--token", TOKEN)
    assert unreachable.returncode == 1 and unreachable.stderr.startswith(
        "error: http://127.0.0.1:9"
    )


async def test_offline_online_and_expectations(server: Server) -> None:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as api:
        created = (await api.post("/v1/holders", json={"name": "coop0"})).json()
        running = await serve_receiver(ReleaseReceiver(created["webhook_secret"], lambda r: None))
        try:
            await api.patch("/v1/holders/coop0", json={"release_url": running.url})
            await api.put(f"/v1/pages/{50 * 32768}/hold", json={"holder": "coop0", "order": 4})
            await api.post("/v1/holders", json={"name": "pinned0"})
            await api.put(f"/v1/pages/{51 * 32768 + 3}/hold", json={"holder": "pinned0"})
            done = await asyncio.to_thread(cli, server, "offline", "50")
            assert done.returncode == 0, done.stderr
            assert "offline" in done.stdout
            refused = await asyncio.to_thread(cli, server, "offline", "51")
            assert refused.returncode == 1
            assert "pinned0" in refused.stdout and "no_release_handler" in refused.stdout
            expected = await asyncio.to_thread(cli, server, "offline", "51", "--expect", "online")
            assert expected.returncode == 0
            report = json.loads(
                (await asyncio.to_thread(cli, server, "offline", "52", "--json")).stdout
            )
            assert report["reports"][0]["state"] == "offline"
            back = await asyncio.to_thread(cli, server, "online", "50", "52")
            assert back.returncode == 0 and "block 50: online" in back.stdout
            waited = await asyncio.to_thread(cli, server, "wait", "--holder", "pinned0")
            assert waited.returncode == 0
            late = await asyncio.to_thread(
                cli, server, "wait", "--holder", "ghost", "--timeout", "1"
            )
            assert late.returncode == 1 and "ghost" in late.stderr
        finally:
            await running.close()


def test_the_readme_example_subsystem(server: Server) -> None:
    env = {**server_env(None), "PAGEHOLDER_URL": server.url, "PAGEHOLDER_TOKEN": TOKEN}
    example = subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert example.stdout is not None
        assert "holding 512 pages at pfn 1048576" in example.stdout.readline()
        with admin(server) as api:
            page = api.get("/v1/pages/1048600").json()
            assert (page["holder"], page["order"]) == ("nic0", 9)
            released = api.post("/v1/pages/1048576/release", timeout=10)
            assert released.status_code == 200, released.text
        assert example.stdout.readline().strip() == "giving back pfn 1048576 order 9 (release)"
    finally:
        example.terminate()
        example.wait(10)
        if example.stdout is not None:
            example.stdout.close()
