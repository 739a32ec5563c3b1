"""Simulated subsystems: scenarios, where their holds go, and how they answer a real
registry's release calls (the fleet in-process, then ``pageholder simulate`` as a process).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from pageholder.client import (
    AsyncPageHolderClient,
    Hold,
    OfflineFailed,
    PageHolderClient,
    Retry,
)
from pageholder.service.api import create_app
from pageholder.service.settings import Settings
from pageholder.sim import (
    Scenario,
    ScenarioError,
    SimulatedFleet,
    SubsystemSpec,
    parse_spec,
)

from .conftest import ADMIN_TOKEN, BLOCK_PAGES, NORMAL
from .servers import pageholder_command, run_pageholder, running_server, server_env

pytestmark = pytest.mark.integration

HUGE18_PAGES = 1 << 18


def block_start(block: int) -> int:
    return NORMAL + (block - 32) * BLOCK_PAGES


# --- scenarios ------------------------------------------------------------------------------

GOOD = """
[[subsystem]]
name = "nic0"
behaviour = "cooperative"
pattern = "scattered"
count = 64
blocks = [40, 41]

[[subsystem]]
name = "rdma0"
behaviour = "flaky"
pattern = "runs"
count = 20
blocks = "44-45"
temporary = 1
port = 0
"""


def test_a_scenario_file_reads_with_defaults() -> None:
    nic0, rdma0 = Scenario.from_toml_text(GOOD).subsystems
    assert (nic0.name, nic0.behaviour, nic0.pattern, nic0.count) == (
        "nic0",
        "cooperative",
        "scattered",
        64,
    )
    assert (nic0.blocks, nic0.timeout_s, nic0.delay_s, nic0.port) == ([40, 41], 5.0, 2.0, 0)
    assert (rdma0.blocks, rdma0.temporary) == ([44, 45], 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('"flaky"', '"grumpy"'), "subsystem 2 (rdma0): behaviour: Input should be"),
        (GOOD.replace("count = 64\n", ""), "subsystem 1 (nic0): count: Field required"),
        (GOOD.replace("count = 64", "count = 0"), "subsystem 1 (nic0): count: "),
        (GOOD.replace("port = 0", "prot = 0"), "subsystem 2 (rdma0): prot: unknown field"),
        (GOOD.replace("[40, 41]", '"41-40"'), "subsystem 1 (nic0): blocks: empty block range"),
        (GOOD.replace("[40, 41]", "[40, -1]"), "subsystem 1 (nic0): blocks[1]: "),
        (GOOD.replace('"rdma0"', '"nic0"'), "subsystem nic0: name: used twice"),
        (GOOD.replace('"rdma0"', '"RDMA 0"'), "subsystem 2 (RDMA 0): name: "),
        ("[[subsystem]\nname =", "not valid TOML"),
        ("title = 'x'", "title: unknown field"),
        ("[[subsystems]]\nname = 'x'", "subsystems: unknown field"),
        (GOOD.replace("count = 64", "cuont = 64"), "subsystem 1 (nic0): cuont: unknown field"),
        ("", "subsystem: Field required"),
    ],
)
def test_a_bad_scenario_names_the_field(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_toml_text(text, "s.toml")
    assert str(caught.value).startswith("s.toml: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_subsystem_spec_from_a_flag() -> None:
    spec = parse_spec("zswap0:slow:huge9:4:40,42-43:delay_s=0.5:timeout_s=2")
    assert (spec.blocks, spec.order, spec.delay_s, spec.timeout_s) == ([40, 42, 43], 9, 0.5, 2.0)
    with pytest.raises(ScenarioError, match="expected name:behaviour:pattern:count:blocks"):
        parse_spec("nic0:cooperative:scattered:64")
    with pytest.raises(ScenarioError, match="': count: Input should be a valid integer"):
        parse_spec("nic0:cooperative:scattered:lots:40")


# --- the fleet against an in-process registry ----------------------------------------------
#
# The registry runs in this process (ASGITransport); the fleet's client talks to it
# through the transport, while the registry calls the fleet's receivers over real
# loopback sockets.


SCENARIO = Scenario(
    (
        SubsystemSpec.make("nic0", "cooperative", "scattered", 8, 40),
        SubsystemSpec.make("gpu0", "cooperative", "huge9", 4, 40, 41),  # shares block 40 with nic0
        SubsystemSpec.make("vfio0", "refusing", "scattered", 4, 42),
        SubsystemSpec.make("balloon0", "no_handler", "runs", 20, 43),
        SubsystemSpec.make("rdma0", "flaky", "runs", 16, 44, temporary=1),
        SubsystemSpec.make("huge0", "cooperative", "huge18", 1, 49),  # covers blocks 48-55
    )
)


@pytest.fixture
async def client() -> AsyncIterator[AsyncPageHolderClient]:
    app = create_app(Settings(data_dir=":memory:", admin_token=ADMIN_TOKEN))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        yield await stack.enter_async_context(
            AsyncPageHolderClient(
                "http://registry", ADMIN_TOKEN, transport=httpx.ASGITransport(app=app)
            )
        )


async def holds_of(client: AsyncPageHolderClient, holder: str) -> list[Hold]:
    return [hold async for hold in client.iter_holds(holder=holder)]


async def test_each_pattern_holds_its_pages(client: AsyncPageHolderClient) -> None:
    async with SimulatedFleet(client, SCENARIO) as fleet:
        nic0 = await holds_of(client, "nic0")
        assert len(nic0) == 8 and {h.order for h in nic0} == {0}
        assert all(block_start(40) <= h.pfn < block_start(41) for h in nic0)
        gpu0 = await holds_of(client, "gpu0")
        assert len(gpu0) == 4 and {h.order for h in gpu0} == {9}
        assert all(h.pfn % 512 == 0 for h in gpu0)
        # block 40 is shared: nic0 and gpu0 got disjoint halves of it
        nic0_top = max(h.pfn for h in nic0)
        assert all(h.pfn > nic0_top for h in gpu0 if h.pfn < block_start(41))
        runs = sorted(h.pfn for h in await holds_of(client, "balloon0"))
        assert len(runs) == 20 and runs[:16] == list(range(runs[0], runs[0] + 16))
        (huge,) = await holds_of(client, "huge0")
        assert (huge.pfn, huge.order) == (block_start(48), 18)
        assert huge.pfn % HUGE18_PAGES == 0
        # what the fleet believes matches the registry
        holders = {h.name: h for h in await client.list_holders()}
        for name, subsystem in fleet.subsystems.items():
            assert holders[name].held_pages == subsystem.held_pages
            assert holders[name].release_url == subsystem.release_url
            assert subsystem.refused == []
        assert holders["balloon0"].release_url is None
        running = fleet.subsystems["nic0"].running
        assert running is not None
        assert holders["nic0"].release_url == f"http://127.0.0.1:{running.port}/"


async def test_offlining_meets_every_behaviour(client: AsyncPageHolderClient) -> None:
    async with SimulatedFleet(client, SCENARIO) as fleet:
        subsystems = fleet.subsystems

        report = await client.offline_block(40, deadline_s=10)
        assert (report.state, report.failures) == ("offline", ())
        assert (report.released_holds, report.released_pages) == (8 + 2, 8 + 2 * 512)
        assert [c.answer for c in subsystems["nic0"].calls] == ["all"]
        assert [c.request.block for c in subsystems["gpu0"].calls] == [40]
        assert subsystems["nic0"].held_pages == 0 and subsystems["gpu0"].held_pages == 2 * 512

        with pytest.raises(OfflineFailed) as refused:
            await client.offline_block(42, deadline_s=10)
        assert refused.value.report is not None
        assert {(f.holder, f.reason) for f in refused.value.report.failures} == {
            ("vfio0", "release_failed")
        }
        assert all("vfio0: pages pinned by DMA" in f.detail for f in refused.value.report.failures)
        assert [c.answer for c in subsystems["vfio0"].calls] == ["refuse"]

        with pytest.raises(OfflineFailed) as unhandled:
            await client.offline_block(43, deadline_s=10)
        assert unhandled.value.report is not None
        assert {f.reason for f in unhandled.value.report.failures} == {"no_release_handler"}
        assert len(unhandled.value.report.failures) == 20

        flaky = await client.offline_block(44, deadline_s=10)
        assert (flaky.state, flaky.released_holds, flaky.webhook_calls) == ("offline", 16, 2)
        assert [c.answer for c in subsystems["rdma0"].calls] == ["later", "all"]

        # a block in the middle of an order-18 hold: the whole hold is released
        huge = await client.offline_block(50, deadline_s=10)
        assert (huge.state, huge.released_pages) == ("offline", HUGE18_PAGES)
        assert subsystems["huge0"].released_pages == HUGE18_PAGES
        assert (await client.get_page(block_start(48))).held is False


async def test_a_restarted_fleet_registers_its_holders_anew(client: AsyncPageHolderClient) -> None:
    scenario = Scenario((SubsystemSpec.make("nic0", "cooperative", "scattered", 8, 40),))
    async with SimulatedFleet(client, scenario) as first:
        old_url = first.subsystems["nic0"].release_url
    async with SimulatedFleet(client, scenario, cleanup=True) as second:
        # the old holder (and its holds) went, a new one holds the same pages
        assert second.subsystems["nic0"].release_url != old_url
        assert len(await holds_of(client, "nic0")) == 8
        report = await client.offline_block(40, deadline_s=10)
        assert report.state == "offline" and len(second.subsystems["nic0"].calls) == 1
    assert [h.name for h in await client.list_holders()] == []


async def test_a_block_the_layout_lacks_is_a_scenario_error(
    client: AsyncPageHolderClient,
) -> None:
    scenario = Scenario((SubsystemSpec.make("nic0", "cooperative", "scattered", 8, 100000),))
    with pytest.raises(ScenarioError, match="subsystem nic0: blocks: block 100000 is not in"):
        async with SimulatedFleet(client, scenario):
            pass
    assert await client.list_holders() == []


# --- `pageholder simulate` against `pageholder serve` --------------------------------------

TOKEN = "simulate-admin-token-0123456789"
WAIT_S = 15.0


def test_the_simulate_command_serves_a_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        GOOD + '\n[[subsystem]]\nname = "vfio0"\nbehaviour = "refusing"\npattern = "huge9"\n'
        "count = 2\nblocks = [46]\n"
    )
    log = tmp_path / "simulate.log"
    with running_server(tmp_path, admin_token=TOKEN) as server:
        command = [
            *pageholder_command(),
            "simulate",
            "--registry",
            server.url,
            "--token",
            TOKEN,
            "--scenario",
            str(scenario),
            "--duration",
            "5",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=server_env(None)
            )
        try:
            with PageHolderClient(server.url, TOKEN, retry=Retry.never()) as registry:
                deadline = time.monotonic() + WAIT_S
                while {h.name: h.held_pages for h in registry.list_holders()} != {
                    "nic0": 64,
                    "rdma0": 20,
                    "vfio0": 1024,
                }:
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the simulator never held its pages"
                    time.sleep(0.1)
                holds = list(registry.iter_holds(holder="vfio0"))
                assert [h.order for h in holds] == [9, 9]
                report = registry.offline_block(40, deadline_s=10)
                assert (report.state, report.released_holds) == ("offline", 32)
                with pytest.raises(OfflineFailed) as refused:
                    registry.offline_block(46, deadline_s=10)
                assert refused.value.report is not None
                assert "vfio0: pages pinned by DMA" in refused.value.report.failures[0].detail
            assert process.wait(WAIT_S) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text()
    assert "nic0 <- release request: reason=offline block=40 holds=32 pages=32" in output
    assert "nic0 -> released all 32 holds (block=40)" in output
    assert "vfio0 -> refused: HTTP 500 vfio0: pages pinned by DMA (block=46)" in output
    assert "simulating 3 subsystems" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "{bad}"], "subsystem 1 (nic0): pattern: Input should be"),
        (["--scenario", "{missing}"], "cannot read"),
        (["--subsystem", "nic0:cooperative:scattered:64"], "expected name:behaviour"),
        ([], "give --scenario FILE or --subsystem SPEC"),
    ],
)
def test_a_bad_scenario_is_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"scattered"', '"everywhere"'))
    paths = {"{bad}": str(bad), "{missing}": str(tmp_path / "missing.toml")}
    args = [paths.get(a, a) for a in args]
    result = run_pageholder("simulate", "--registry", "http://127.0.0.1:9", *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
