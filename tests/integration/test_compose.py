"""docker-compose.yml's topology, run for real across network namespaces (no Docker).

The scenario of the compose file end to end, then two faults: a subsystem's link cut
during an offline, and the registry's process restarted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..installed import Installed
from . import netns

ROOT = Path(__file__).parents[2]
TOKEN = "compose-test-admin-token-0123456789"
WHY_NOT = netns.available()

pytestmark = [
    pytest.mark.integration,
    pytest.mark.netns,
    pytest.mark.skipif(WHY_NOT is not None, reason=f"compose topology: {WHY_NOT}"),
]


@pytest.fixture
def topo(tmp_path: Path, installed: Installed) -> Iterator[netns.Topology]:
    # The services run the installed wheel, as the image does, not this tree.
    with netns.topology(
        ROOT / "docker-compose.yml", tmp_path, {"PAGEHOLDER_ADMIN_TOKEN": TOKEN}, installed.bin
    ) as t:
        yield t


def api(topo: netns.Topology) -> httpx.Client:
    return httpx.Client(
        base_url=topo.url("registry", 8000),
        headers={"Authorization": f"Bearer {TOKEN}"},
        trust_env=False,
        timeout=60,
    )


def wait_until(check: Any, timeout_s: float, what: str, topo: netns.Topology) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{topo.outputs()}")


def state_of(client: httpx.Client) -> tuple[Any, ...]:
    holders = sorted(
        (h["name"], h["holds"], h["held_pages"]) for h in client.get("/v1/holders").json()["items"]
    )
    holds = client.get("/v1/pages", params={"limit": 10000}).json()["items"]
    blocks = {
        b["id"]: b["state"]
        for b in client.get("/v1/blocks", params={"limit": 1000}).json()["items"]
    }
    return holders, holds, blocks


def test_the_compose_scenario_with_a_cut_link_and_a_registry_restart(topo: netns.Topology) -> None:
    topo.start("registry")
    topo.wait_healthy("registry", 8000)
    for name in ("nic0", "gpu0", "rdma0"):
        topo.start(name)
    topo.start("offliner")
    assert topo.wait_exit("offliner", 120) == 0, topo.outputs()

    with api(topo) as client:
        # subsystems registered across the network, under their service names
        urls = {h["name"]: h["release_url"] for h in client.get("/v1/holders").json()["items"]}
        assert {n: urls[n].split(":")[1] for n in ("nic0", "gpu0", "rdma0")} == {
            "nic0": "//nic0",
            "gpu0": "//gpu0",
            "rdma0": "//rdma0",
        }
        states = {b: client.get(f"/v1/blocks/{b}").json()["state"] for b in (40, 41, 42, 44)}
        assert states == {40: "offline", 41: "offline", 42: "offline", 44: "online"}
        refused = client.post("/v1/blocks/44/offline", json={"deadline_s": 10})
        assert refused.status_code == 409
        failures = refused.json()["report"]["failures"]
        assert failures and {f["holder"] for f in failures} == {"rdma0"}
        assert {f["reason"] for f in failures} == {"release_failed"}
        assert "rdma0" in failures[0]["detail"]

        # fault 1: nic0 holds again (a restart re-registers it), then its link is cut
        for block in (40, 41):
            assert client.post(f"/v1/blocks/{block}/online").status_code == 200
        topo.stop("nic0")
        topo.start("nic0")
        wait_until(
            lambda: client.get("/v1/holders/nic0").json().get("holds", 0) > 0,
            30,
            "nic0 to hold",
            topo,
        )
        before = client.get("/v1/blocks/40").json()
        assert before["holds"] > 0
        topo.cut("nic0")
        try:
            cut = client.post("/v1/blocks/40/offline", json={"deadline_s": 8})
        finally:
            topo.mend("nic0")
        assert cut.status_code == 409, cut.text
        reasons = {f["reason"] for f in cut.json()["report"]["failures"]}
        assert reasons <= {"holder_unreachable", "release_timeout", "deadline_exceeded"}, reasons
        after = client.get("/v1/blocks/40").json()
        assert (after["state"], after["holds"], after["held_pages"]) == (
            "online",
            before["holds"],
            before["held_pages"],
        )  # nothing lost
        assert client.post("/v1/blocks/40/offline", json={"deadline_s": 20}).status_code == 200

        # fault 2: the registry's process restarts; its state comes back from its data dir
        remembered = state_of(client)
    assert topo.stop("registry") in (0, -15)
    topo.start("registry")
    topo.wait_healthy("registry", 8000)
    with api(topo) as client:
        assert state_of(client) == remembered
