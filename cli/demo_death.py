"""The demo's last phase: a subsystem dies, and its lease says so.

``pageholder simulate`` runs one more subsystem (``dead0``, a 2-second holder lease kept
alive by its release receiver) in a process of its own, which the demo SIGKILLs. Within
the lease's TTL its holds read ``orphaned``; an offline of its block fails at once with
``lease_expired`` instead of waiting out timeouts; the admin reclaims its holds and the
block goes offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Final

from rich.console import Console

from pageholder.client import AsyncPageHolderClient, ClientError, OfflineFailed
from pageholder.sim import ScenarioError

#: The subsystem that dies: its own process, a lease, pages in a block of its own.
DEAD_BLOCK: Final = 48
DEAD_TTL_S: Final = 2.0
DEAD_HOLDS: Final = 32
DEAD_SPEC: Final = f"dead0:cooperative:runs:{DEAD_HOLDS}:{DEAD_BLOCK}:lease_ttl_s={DEAD_TTL_S:g}"
#: How long the demo waits for the dying subsystem to start or its lease to run out.
DEAD_WAIT_S: Final = 20.0


async def a_subsystem_dies(
    out: Console, client: AsyncPageHolderClient, url: str, token: str | None, deadline_s: float
) -> None:
    out.print(
        f"\n[bold]5. a subsystem dies[/bold]: dead0 runs in a process of its own "
        f"(pageholder simulate), holds pages in block {DEAD_BLOCK} and keeps a "
        f"{DEAD_TTL_S:g} s lease alive; then it is SIGKILLed"
    )
    block = await client.get_block(DEAD_BLOCK)
    if block.state == "offline":
        await client.online(DEAD_BLOCK)
    command = [
        sys.executable,
        "-c",
        "from pageholder.cli.main import main; main()",
        "simulate",
        "--url",
        url,
        "--subsystem",
        DEAD_SPEC,
    ]
    env = {**os.environ, "PAGEHOLDER_TOKEN": token or ""}
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        started = time.monotonic()
        while True:
            holders = {h.name: h for h in await client.list_holders()}
            dead0 = holders.get("dead0")
            if dead0 is not None and dead0.holds == DEAD_HOLDS:
                break
            if process.returncode is not None or time.monotonic() - started > DEAD_WAIT_S:
                raise ScenarioError("the dying subsystem (pageholder simulate) did not start")
            await asyncio.sleep(0.1)
        first = block.start_pfn
        page = await client.owner(first)
        out.print(
            f"   dead0 (pid {process.pid}) holds {dead0.held_pages} pages; lease "
            f"{dead0.lease.state if dead0.lease else '?'}; pfn {first}: {page.state}"
        )
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed = time.monotonic()
        while (await client.owner(first)).state != "orphaned":
            if time.monotonic() - killed > DEAD_TTL_S + DEAD_WAIT_S:
                raise ScenarioError("dead0's holds never turned orphaned")
            await asyncio.sleep(0.05)
        orphans = (await client.list_holds(state="orphaned", holder="dead0")).items
        usage = await client.get_block(DEAD_BLOCK)
        out.print(
            f"   SIGKILLed; {time.monotonic() - killed:.1f} s later its lease expired: "
            f"{len(orphans)} holds read [yellow]orphaned[/yellow], block {DEAD_BLOCK} has "
            f"{usage.orphaned_pages} orphaned pages"
        )
        try:
            report = await client.offline(DEAD_BLOCK, deadline_s=deadline_s)
            out.print(f"   offline of block {DEAD_BLOCK}: unexpectedly {report.state}")
        except OfflineFailed as exc:
            failed = exc.report
            reasons = sorted({f.reason for f in failed.failures}) if failed else []
            took = f"{failed.duration_ms:.0f} ms" if failed else "?"
            out.print(
                f"   offline of block {DEAD_BLOCK}: [red]refused[/red] in {took} (deadline "
                f"{deadline_s:g} s), reason {', '.join(reasons)}: the call fails fast"
            )
        done = await client.reclaim("dead0")
        out.print(
            f"   the admin reclaims (pageholder reclaim dead0): {done.reclaimed_holds} holds, "
            f"{done.reclaimed_pages} pages erased without a call"
        )
        report = await client.offline(DEAD_BLOCK, deadline_s=deadline_s)
        out.print(f"   offline of block {DEAD_BLOCK} again: [green]{report.state}[/green]")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(ClientError):
            await client.delete_holder("dead0", force=True)
