"""A real subsystem process keeps its lease alive, is SIGKILLed, and its holds turn
orphaned; an offline then fails fast with lease_expired, and the admin reclaims."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pageholder.client import LeaseExpired, OfflineFailed, PageHolderClient, Retry

from .servers import pageholder_command, running_server, server_env

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-lease-tests-0123"
NORMAL = 1 << 20
BLOCK = 46
BLOCK_START = NORMAL + (BLOCK - 32) * 32768
WAIT_S = 20.0
TTL_S = 1.0


def test_a_sigkilled_subsystem_is_orphaned_then_reclaimed(tmp_path: Path) -> None:
    log = tmp_path / "simulate.log"
    with running_server(tmp_path, admin_token=TOKEN) as server:
        command = [
            *pageholder_command(),
            "simulate",
            "--registry",
            server.url,
            "--token",
            TOKEN,
            "--subsystem",
            f"dead0:cooperative:runs:32:{BLOCK}:lease_ttl_s={TTL_S:g}",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=server_env(None)
            )
        try:
            with PageHolderClient(server.url, TOKEN, retry=Retry.never()) as registry:
                deadline = time.monotonic() + WAIT_S
                while not any(h.name == "dead0" and h.holds == 32 for h in registry.list_holders()):
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the simulator never held its pages"
                    time.sleep(0.05)
                # Alive for three TTLs: its keepalives (from another process) hold the lease.
                alive_until = time.monotonic() + 3 * TTL_S
                while time.monotonic() < alive_until:
                    holder = registry.get_holder("dead0")
                    assert holder.lease is not None and holder.lease.state == "live"
                    time.sleep(0.1)
                assert registry.get_page(BLOCK_START).state == "held"

                process.kill()  # SIGKILL: no goodbye, no keepalive any more
                process.wait(WAIT_S)
                killed = time.monotonic()
                while registry.get_page(BLOCK_START).state != "orphaned":
                    assert time.monotonic() - killed < TTL_S + 5, "never orphaned"
                    time.sleep(0.02)
                assert time.monotonic() - killed <= TTL_S + 1  # within a TTL (plus polling)
                orphans = registry.list_holds(state="orphaned").items
                assert len(orphans) == 32 and {h.holder for h in orphans} == {"dead0"}
                assert registry.get_block(BLOCK).orphaned_pages == 32
                with pytest.raises(LeaseExpired):
                    registry.hold(BLOCK_START + 100, "dead0")

                started = time.monotonic()
                with pytest.raises(OfflineFailed) as failed:
                    registry.offline_block(BLOCK, deadline_s=30)
                assert time.monotonic() - started < 3  # not the 30 s deadline
                report = failed.value.report
                assert report is not None
                assert {f.reason for f in report.failures} == {"lease_expired"}

                done = registry.reclaim("dead0")
                assert (done.reclaimed_holds, done.reclaimed_pages) == (32, 32)
                assert registry.offline_block(BLOCK, deadline_s=10).state == "offline"
                metrics = registry.metrics()
                assert "pageholder_lease_expirations_total 1.0" in metrics
                assert "pageholder_lease_reclaimed_holds_total 32.0" in metrics
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
