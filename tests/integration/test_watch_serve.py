"""client.watch() against real ``pageholder serve`` processes: across a registry
restart on a durable data dir, no revision is lost or repeated, and revisions go on
from where they were; ``pageholder watch`` prints one line per event."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pageholder.client import AsyncPageHolderClient, PageHolderClient

from .servers import pageholder_command, running_server, server_env, start_server
from .watching import NORMAL, Collector, Proxy

pytestmark = pytest.mark.integration
TOKEN = "watch-serve-admin-token-0123456789"


async def test_watch_resumes_across_a_restart_without_gaps_or_duplicates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(tmp_path / "run1", data_dir=str(data), admin_token=TOKEN)
    proxy = await Proxy(first.port).start()
    watcher = Collector(AsyncPageHolderClient(proxy.url, TOKEN), since=0)
    second = None
    try:
        async with AsyncPageHolderClient(first.url, TOKEN) as admin:
            await admin.create_holder("nic0")
            for i in range(10):
                await admin.hold(NORMAL + i, "nic0")
        await watcher.until(11)
        assert first.stop(), "the first server did not stop on SIGTERM"
        second = start_server(tmp_path / "run2", data_dir=str(data), admin_token=TOKEN)
        proxy.target = second.port  # the watcher's reconnects now reach the new process
        async with AsyncPageHolderClient(second.url, TOKEN) as admin:
            page = await admin._http.get(
                second.url + f"/v1/pages/{NORMAL}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert page.headers["X-Pageholder-Revision"] == "11"  # continues, not from 0
            await admin.batch_unset("nic0", ranges=[(NORMAL, 10)])
            await admin.hold(NORMAL, "nic0", order=4)
        events = await watcher.until(13)
        assert [e.rev for e in events] == list(range(1, 14))
        assert [e.type for e in events[-2:]] == ["hold.unset", "hold.created"]
        assert len(events[-2].holds) == 10
    finally:
        await watcher.stop()
        await proxy.close()
        first.stop()
        if second is not None:
            assert second.stop()


def test_the_watch_command_prints_one_line_per_event(tmp_path: Path) -> None:
    with running_server(tmp_path, admin_token=TOKEN) as server:
        env = server_env(None, {"PAGEHOLDER_URL": server.url, "PAGEHOLDER_TOKEN": TOKEN})
        watch = subprocess.Popen(
            [*pageholder_command(), "watch", "--since", "0", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        try:
            with PageHolderClient(server.url, TOKEN) as admin:
                admin.create_holder("nic0")
            hold = subprocess.run(
                [*pageholder_command(), "hold", str(NORMAL), "--holder", "nic0", "--order", "9"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert hold.returncode == 0, hold.stderr
            assert watch.stdout is not None
            # Each readline is bounded: both events are committed before it is called.
            created = json.loads(watch.stdout.readline())
            held = json.loads(watch.stdout.readline())
            assert (created["rev"], created["type"]) == (1, "holder.created")
            assert (held["rev"], held["type"], held["holder"]) == (2, "hold.created", "nic0")
            assert held["holds"] == [{"pfn": NORMAL, "order": 9}]
        finally:
            watch.terminate()
            watch.communicate(timeout=10)
