"""The terminal commands and the README's example subsystem, against a real server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pageholder.client import ReleaseReceiver, ReleaseResult, serve_receiver

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


#: A holder's webhook answer that tries to take over the operator's terminal: retitle the
#: window (OSC), clear the screen (CSI 2J, home), a C1 CSI, and rich markup saying all
#: is well.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[H\x9b31m[bold red]ALL RELEASED OK[/bold red]"
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def assert_inert(text: str) -> None:
    """Nothing a terminal acts on, and the holder's markup printed as the text it is."""
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text, repr(text)
    assert "[bold red]ALL RELEASED OK" in text, text


async def test_terminal_injection_by_a_holders_last_error(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # table cells on one line each
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as api:
        created = (await api.post("/v1/holders", json={"name": "spoof0"})).json()
        receiver = ReleaseReceiver(
            created["webhook_secret"], lambda r: ReleaseResult.refuse(HOSTILE)
        )
        running = await serve_receiver(receiver)
        try:
            await api.patch("/v1/holders/spoof0", json={"release_url": running.url})
            pfn = 60 * 32768
            await api.put(f"/v1/pages/{pfn}/hold", json={"holder": "spoof0"})
            refused = await asyncio.to_thread(cli, server, "release", str(pfn))
            assert refused.returncode == 1 and "(release_failed)" in refused.stderr
            assert_inert(refused.stderr)
            assert len(refused.stderr.strip().splitlines()) == 1
            holder = (await api.get("/v1/holders/spoof0")).json()
            assert "\x1b[2J" in holder["last_error"]  # the registry kept what it was told
            for args in (["holders"], ["holder", "show", "spoof0"], ["offline", "60"]):
                shown = await asyncio.to_thread(cli, server, *args)
                assert_inert(shown.stdout)
                assert "\x1b" not in shown.stderr, shown.stderr
            as_json = await asyncio.to_thread(cli, server, "holder", "show", "spoof0", "--json")
            assert "\x9b" not in as_json.stdout and "\x1b" not in as_json.stdout
            assert json.loads(as_json.stdout)["last_error"] == holder["last_error"]
        finally:
            await running.close()
            await api.delete("/v1/holders/spoof0", params={"force": "true"})


def test_holder_create_show_update_delete(server: Server) -> None:
    created = cli(server, "holder", "create", "made0", "--description", "a test holder")
    assert created.returncode == 0, created.stderr
    token = re.search(r"^token: +(pht_\S+)$", created.stdout, re.M)
    secret = re.search(r"^webhook secret: +(whsec_\S+)$", created.stdout, re.M)
    assert token and secret, created.stdout
    assert "keep the token and the webhook secret" in created.stderr
    # the token works: as made0, hold a page for itself
    as_holder = run_pageholder("hold", str(NORMAL + 4096), "--url", server.url, "--token", token[1])
    assert as_holder.returncode == 0 and "-> made0" in as_holder.stdout, as_holder.stderr
    shown = json.loads(cli(server, "holder", "show", "made0", "--json").stdout)
    assert (shown["description"], shown["holds"], shown["release_url"]) == (
        "a test holder",
        1,
        None,
    )
    assert ISO_TIME.fullmatch(shown["created"]), shown["created"]
    changed = cli(server, "holder", "update", "made0", "--timeout", "2.5", "--json")
    assert json.loads(changed.stdout)["timeout_s"] == 2.5
    again = cli(server, "holder", "create", "made0")
    assert again.returncode == 1 and "(holder_exists)" in again.stderr
    kept = cli(server, "holder", "delete", "made0")
    assert kept.returncode == 1 and "(holder_has_holds)" in kept.stderr
    assert len(kept.stderr.strip().splitlines()) == 1
    gone = cli(server, "holder", "delete", "made0", "--force", "--json")
    assert json.loads(gone.stdout) == {"result": "deleted", "name": "made0"}
    missing = cli(server, "holder", "show", "made0")
    assert missing.returncode == 1 and "(holder_not_found)" in missing.stderr


def test_every_client_command_takes_json_with_the_apis_times(server: Server) -> None:
    with admin(server) as api:
        api.post("/v1/holders", json={"name": "json0"})
    pfn = str(NORMAL + 8192)
    runs = {
        "hold": ["hold", pfn, "--holder", "json0"],
        "owner": ["owner", pfn],
        "holders": ["holders"],
        "holder show": ["holder", "show", "json0"],
        "zones": ["zones"],
        "blocks": ["blocks", "--held"],
        "offline": ["offline", "53"],
        "online": ["online", "53"],
        "wait": ["wait", "--holder", "json0", "--timeout", "5"],
        "unset": ["unset", pfn],
    }
    answers = {}
    for name, args in runs.items():
        done = cli(server, *args, "--json")
        assert done.returncode == 0, (name, done.stderr)
        answers[name] = json.loads(done.stdout)
    with admin(server) as api:
        api.delete("/v1/holders/json0")
    assert ISO_TIME.fullmatch(answers["hold"]["since"]), answers["hold"]
    assert ISO_TIME.fullmatch(answers["owner"]["since"])
    assert all(ISO_TIME.fullmatch(h["created"]) for h in answers["holders"])
    assert answers["online"][0] == {**answers["online"][0], "id": 53, "state": "online"}
    assert answers["unset"] == {"result": "unset", "pfn": int(pfn)}
    assert answers["wait"] == {"ready": ["json0"]}


def test_a_refusal_is_one_line_with_its_code(server: Server) -> None:
    for args, code in (
        (["offline", "999999"], "block_not_found"),
        (["online", "999999"], "block_not_found"),
        (["owner", str(2**40)], "pfn_not_found"),
        (["unset", str(NORMAL + 12288)], "page_not_held"),
        (["hold", str(NORMAL + 1), "--order", "3", "--holder", "x"], "misaligned"),
    ):
        done = cli(server, *args)
        assert done.returncode == 1, (args, done.stdout)
        assert done.stderr.startswith("error: ") and f"({code})" in done.stderr, done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stdout == "", done.stdout


def test_help_names_what_each_value_is() -> None:
    for command in (["owner"], ["offline"], ["hold"], ["holder", "create"], ["simulate"]):
        done = run_pageholder(*command, "--help")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert "<bool>" not in text and "...}..." not in text and "{BLOCK...}" not in text
        assert "the admin must say" not in text
    hold_help = run_pageholder("hold", "--help").stdout
    assert "--holder NAME" in hold_help and "--url URL" in hold_help
