"""``pageholder demo`` end to end: its summary tells what its scenario makes happen."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pageholder.cli.demo_story import DEMO_BLOCKS, DEMO_SCENARIO

from .servers import pageholder_command, server_env

pytestmark = pytest.mark.integration

#: Behaviours that keep a block online: their holder does not give every page back.
KEEPS_PAGES = {"refusing", "partial", "no_handler"}


def expected_states() -> dict[int, str]:
    """Per demo block, the state it must end in, derived from the scenario."""
    states = {block: "offline" for block in DEMO_BLOCKS}
    for spec in DEMO_SCENARIO.subsystems:
        if spec.behaviour in KEEPS_PAGES:
            for block in spec.blocks:
                states[block] = "online"
    return states


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess[str]:
    env = {**server_env(None), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [*pageholder_command(), "demo"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_demo_runs_to_the_end(demo_run: subprocess.CompletedProcess[str]) -> None:
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert "Traceback" not in demo_run.stderr, demo_run.stderr
    out = demo_run.stdout
    for phase in ("1. registry up at http://127.0.0.1:", "2. 7 subsystems hold", "3. offlining"):
        assert phase in out
    assert "4. summary" in out


def test_every_block_ends_as_the_scenario_says(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    # one line per block as it is offlined, and one row per block in the summary table
    lines = dict(re.findall(r"^ +block (\d+): (offline|stays online)", demo_run.stdout, re.M))
    rows = dict(re.findall(r"^│ +(\d+) │ (offline|online) ", demo_run.stdout, re.M))
    expected = expected_states()
    assert {int(b): s.removeprefix("stays ") for b, s in lines.items()} == expected
    assert {int(b): s for b, s in rows.items() if int(b) in expected} == expected
    went = sum(1 for state in expected.values() if state == "offline")
    assert f"{went} of {len(expected)} blocks went offline" in demo_run.stdout


def test_the_summary_says_why_pages_stayed_held(
    demo_run: subprocess.CompletedProcess[str],
) -> None:
    out = demo_run.stdout
    reasons = {
        "refusing": "release_failed x{n} (HTTP 500: {name}: pages pinned by DMA)",
        "partial": "release_failed x{half} ({name}: page busy with in-flight I/O)",
        "no_handler": "no_release_handler x{n} (holder '{name}' has no release handler)",
    }
    for spec in DEMO_SCENARIO.subsystems:
        if spec.behaviour in reasons:
            (block,) = spec.blocks
            why = reasons[spec.behaviour].format(n=spec.count, half=spec.count // 2, name=spec.name)
            row = next(line for line in out.splitlines() if re.match(rf"│ +{block} │", line))
            assert f"{spec.name}: {why}" in row, row
            reason = "no_release_handler" if spec.behaviour == "no_handler" else "release_failed"
            assert f"   block {block}: {spec.name}: {reason}" in out


def test_the_holder_table_adds_up(demo_run: subprocess.CompletedProcess[str]) -> None:
    rows = {
        m[0]: tuple(int(x) for x in m[1:])
        for m in re.findall(
            r"^│ (\w+) +│ \w+ +│ +(\d+) │ +(\d+) │ +(\d+) │ +(\d+) │", demo_run.stdout, re.M
        )
    }
    assert set(rows) == {spec.name for spec in DEMO_SCENARIO.subsystems}
    for spec in DEMO_SCENARIO.subsystems:
        before, released, still, calls = rows[spec.name]
        assert before == released + still and before > 0
        if spec.behaviour in {"cooperative", "slow", "flaky"}:
            assert (released, still) == (before, 0)
        elif spec.behaviour in {"refusing", "no_handler"}:
            assert (released, still) == (0, before)
        else:  # partial
            assert released == still == before // 2
        assert (calls == 0) == (spec.behaviour == "no_handler")


def test_the_demo_takes_a_registry_token_or_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEHOLDER_")}
    result = subprocess.run(
        [*pageholder_command(), "demo", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --url needs its admin token")


def test_demo_keep_leaves_the_registry_up_for_the_console(tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [*pageholder_command(), "demo", "--keep"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(None) | {"COLUMNS": "200"},
        )
    try:
        deadline = time.monotonic() + 120
        while "kept up" not in log.read_text() and time.monotonic() < deadline:
            assert demo.poll() is None, log.read_text()
            time.sleep(0.1)
        printed = log.read_text()
        assert "kept up" in printed, printed
        found = re.search(r"the console: (http://\S+)/ui \(admin token: (\S+)\)", printed)
        assert found, printed
        url, token = found.groups()
        assert httpx.get(f"{url}/ui", trust_env=False).status_code == 200
        blocks = httpx.get(
            f"{url}/v1/blocks/42", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        )
        assert blocks.json()["state"] == "offline"  # the story's outcome, still there
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) in (0, 130)
