"""``pageholder demo``: a registry, a fleet of simulated subsystems, and a hot-remove.

The story, phase by phase: a registry starts in this process (uvicorn on a free
loopback port, in-memory state, the default 16 GiB layout) unless ``--registry`` names
one; seven simulated subsystems (``pageholder.sim.SimulatedFleet``, real release handlers on
loopback) register and hold pages in memory blocks 40-47; the blocks are offlined one by
one; then the registry's offline reports say, per block and per holder, what was
released and what stayed held, and why. Blocks that stay online are part of the story
(a refusing driver, a balloon with no release handler), so the demo exits 0 whenever it
ran to the end.

Then a subsystem dies: ``pageholder simulate`` runs one more subsystem (``dead0``, a
2-second holder lease kept alive by its release receiver) in a process of its own, which
the demo SIGKILLs. Within the lease's TTL its holds read ``orphaned``; an offline of its
block fails at once with ``lease_expired`` instead of waiting out timeouts; the admin
reclaims its holds and the block goes offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated, Final

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pageholder.cli.console import fail
from pageholder.client import (
    AsyncPageHolderClient,
    ClientError,
    Holder,
    OfflineFailed,
    OfflineFailure,
    OfflineReport,
    PageHolderError,
)
from pageholder.service.api import create_app
from pageholder.service.settings import Settings
from pageholder.sim import Scenario, ScenarioError, SimulatedFleet, SubsystemSpec, block_list

DEMO_BLOCKS: Final = tuple(range(40, 48))
#: Seconds each offline may take; the slowest subsystem answers in about one.
DEADLINE_S: Final = 10.0
#: The subsystem that dies: its own process, a lease, pages in a block of its own.
DEAD_BLOCK: Final = 48
DEAD_TTL_S: Final = 2.0
DEAD_SPEC: Final = f"dead0:cooperative:runs:32:{DEAD_BLOCK}:lease_ttl_s={DEAD_TTL_S:g}"
#: How long the demo waits for the dying subsystem to start or its lease to run out.
DEAD_WAIT_S: Final = 20.0


#: Who holds what in blocks 40-47, and how each answers a release call.
DEMO_SCENARIO: Final = Scenario(
    (
        SubsystemSpec.make("nic0", "cooperative", "scattered", 60, 40, 41, 45),
        SubsystemSpec.make("gpu0", "cooperative", "huge9", 16, 42, 43),
        SubsystemSpec.make("rdma0", "flaky", "runs", 48, 44, temporary=1),
        SubsystemSpec.make("vfio0", "refusing", "scattered", 8, 45),
        SubsystemSpec.make("ssd0", "partial", "huge9", 4, 43),
        SubsystemSpec.make("balloon0", "no_handler", "runs", 32, 46),
        SubsystemSpec.make("zswap0", "slow", "scattered", 24, 47, delay_s=1.0, timeout_s=5),
    )
)


@dataclass
class Outcome:
    """One block's offline: the registry's report, or the error that refused it."""

    block: int
    report: OfflineReport | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        return self.report.state if self.report is not None else "refused"


# --- an embedded registry ----------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals (Ctrl-C) to the demo."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def embedded_registry(host: str = "127.0.0.1") -> AsyncIterator[tuple[str, str]]:
    """A registry served in this event loop on a free port: yields ``(url, admin_token)``."""
    token = secrets.token_urlsafe(24)
    app = create_app(Settings(data_dir=":memory:", admin_token=token))
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it every keep-alive request waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-registry")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the embedded registry stopped while starting")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}", token
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()


# --- the story -----------------------------------------------------------------------------


async def run_demo(out: Console, registry: str | None = None, token: str | None = None) -> None:
    """Tell the whole story on ``out``; against ``registry`` if given, else an embedded one."""
    external = registry is not None
    async with contextlib.AsyncExitStack() as stack:
        if registry is None:
            url, token = await stack.enter_async_context(embedded_registry())
            where = "in this process, in memory"
        else:
            url, where = registry, "given by --registry"
        client = await stack.enter_async_context(AsyncPageHolderClient(url, token))
        first = await client.get_block(DEMO_BLOCKS[0])
        last = await client.get_block(DEMO_BLOCKS[-1])
        out.print(
            f"[bold]1. registry up[/bold] at {url} ({where}); blocks "
            f"{block_list(DEMO_BLOCKS)} = pfns {first.start_pfn}-"
            f"{last.start_pfn + last.nr_pages - 1}, zone {first.zone}"
        )
        await _online_again(out, client)

        # Against someone's registry, the demo's holders go when the demo goes.
        fleet = await stack.enter_async_context(
            SimulatedFleet(client, DEMO_SCENARIO, cleanup=external)
        )
        before = {h.name: h for h in await client.list_holders() if h.name in fleet.subsystems}
        _print_fleet(out, fleet, before)

        out.print(
            f"\n[bold]3. offlining[/bold] blocks {block_list(DEMO_BLOCKS)} one by one (isolate, "
            "one release call per holder, offline only if nothing stays held)"
        )
        outcomes = await _offline_all(out, client)

        after = {h.name: h for h in await client.list_holders() if h.name in fleet.subsystems}
        out.print("\n[bold]4. summary[/bold]")
        _print_blocks(out, outcomes)
        _print_holders(out, fleet, before, after)
        _print_conclusion(out, outcomes)
        await _a_subsystem_dies(out, client, url, token)
        if external:
            out.print(f"(the demo's holders are deleted from {url} on the way out)")


async def _a_subsystem_dies(
    out: Console, client: AsyncPageHolderClient, url: str, token: str | None
) -> None:
    out.print(
        f"\n[bold]5. a subsystem dies[/bold]: dead0 runs in a process of its own "
        f"(pageholder simulate), holds pages in block {DEAD_BLOCK} and keeps a "
        f"{DEAD_TTL_S:g} s lease alive; then it is SIGKILLed"
    )
    block = await client.get_block(DEAD_BLOCK)
    if block.state == "offline":
        await client.online_block(DEAD_BLOCK)
    command = [
        sys.executable,
        "-c",
        "from pageholder.cli.main import main; main()",
        "simulate",
        "--registry",
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
            if dead0 is not None and dead0.holds == 32:
                break
            if process.returncode is not None or time.monotonic() - started > DEAD_WAIT_S:
                raise ScenarioError("the dying subsystem (pageholder simulate) did not start")
            await asyncio.sleep(0.1)
        first = block.start_pfn
        page = await client.get_page(first)
        out.print(
            f"   dead0 (pid {process.pid}) holds {dead0.held_pages} pages; lease "
            f"{dead0.lease.state if dead0.lease else '?'}; pfn {first}: {page.state}"
        )
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed = time.monotonic()
        while (await client.get_page(first)).state != "orphaned":
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
            report = await client.offline_block(DEAD_BLOCK, deadline_s=DEADLINE_S)
            out.print(f"   offline of block {DEAD_BLOCK}: unexpectedly {report.state}")
        except OfflineFailed as exc:
            failed = exc.report
            reasons = sorted({f.reason for f in failed.failures}) if failed else []
            took = f"{failed.duration_ms:.0f} ms" if failed else "?"
            out.print(
                f"   offline of block {DEAD_BLOCK}: [red]refused[/red] in {took} (deadline "
                f"{DEADLINE_S:g} s), reason {', '.join(reasons)}: the call fails fast"
            )
        done = await client.reclaim("dead0")
        out.print(
            f"   the admin reclaims (pageholder reclaim dead0): {done.reclaimed_holds} holds, "
            f"{done.reclaimed_pages} pages erased without a call"
        )
        report = await client.offline_block(DEAD_BLOCK, deadline_s=DEADLINE_S)
        out.print(f"   offline of block {DEAD_BLOCK} again: [green]{report.state}[/green]")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(ClientError):
            await client.delete_holder("dead0", force=True)


async def _online_again(out: Console, client: AsyncPageHolderClient) -> None:
    """An earlier demo against the same registry may have left blocks offline."""
    for block_id in DEMO_BLOCKS:
        block = await client.get_block(block_id)
        if block.state == "offline":
            await client.online_block(block_id)
            out.print(f"   block {block_id} was offline (an earlier run?): online again")


def _print_fleet(out: Console, fleet: SimulatedFleet, before: dict[str, Holder]) -> None:
    pages = sum(h.held_pages for h in before.values())
    out.print(
        f"\n[bold]2. {len(fleet.subsystems)} subsystems hold {pages} pages[/bold] in blocks "
        f"{block_list(DEMO_BLOCKS)}: each is a holder with a release handler on loopback "
        "(but one)"
    )
    view = Table(title_justify="left")
    for column in ("holder", "behaviour", "holds", "pages", "blocks", "release handler"):
        view.add_column(column)
    for name, s in fleet.subsystems.items():
        held = before.get(name)
        view.add_row(
            name,
            _behaviour(s.spec),
            f"{held.holds if held else 0} x {s.spec.pattern}",
            str(held.held_pages if held else 0),
            block_list(s.spec.blocks),
            s.release_url or "[yellow](none)[/yellow]",
        )
    out.print(view)


def _behaviour(spec: SubsystemSpec) -> str:
    return {
        "cooperative": "cooperative: releases at once",
        "refusing": "refusing: pages pinned by DMA",
        "slow": f"slow: releases after {spec.delay_s:g} s",
        "flaky": f"flaky: 'retry later' x{spec.temporary}, then releases",
        "partial": "partial: releases half",
        "no_handler": "no release handler",
    }[spec.behaviour]


async def _offline_all(out: Console, client: AsyncPageHolderClient) -> list[Outcome]:
    outcomes: list[Outcome] = []
    progress = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
    )
    with progress:
        task = progress.add_task("offlining", total=len(DEMO_BLOCKS))
        for block_id in DEMO_BLOCKS:
            progress.update(task, description=f"offlining block {block_id}")
            outcome = Outcome(block_id)
            try:
                outcome.report = await client.offline_block(block_id, deadline_s=DEADLINE_S)
            except OfflineFailed as exc:
                outcome.report = exc.report
                outcome.error = None if exc.report is not None else exc.detail
            except PageHolderError as exc:
                outcome.error = f"{exc.detail} ({exc.code})"
            outcomes.append(outcome)
            progress.console.print(_one_line(outcome))
            progress.advance(task)
        progress.update(task, description="offlining done")
    return outcomes


def _one_line(outcome: Outcome) -> str:
    report = outcome.report
    if report is None:
        return f"   block {outcome.block}: [red]refused[/red]: {outcome.error}"
    done = (
        f"released {_n(report.released_holds, 'hold')} / {_n(report.released_pages, 'page')} "
        f"in {_n(report.webhook_calls, 'webhook call')}, {report.duration_ms:.0f} ms"
    )
    if report.state == "offline":
        return f"   block {outcome.block}: [green]offline[/green] ({done})"
    kept = sorted({f"{f.holder} ({f.reason})" for f in report.failures})
    return (
        f"   block {outcome.block}: [red]stays {report.state}[/red]: "
        f"{', '.join(kept)} kept pages ({done})"
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _why(failures: tuple[OfflineFailure, ...]) -> str:
    """Failures grouped: ``vfio0: release_failed x8 (HTTP 500: vfio0: pages pinned...)``."""
    groups: dict[tuple[str, str, str], int] = {}
    for f in failures:
        key = (f.holder, f.reason, f.detail)
        groups[key] = groups.get(key, 0) + 1
    return "\n".join(
        f"{holder}: {reason} x{n} ({detail})" for (holder, reason, detail), n in groups.items()
    )


def _print_blocks(out: Console, outcomes: list[Outcome]) -> None:
    view = Table(title="per memory block (the registry's offline reports)", title_justify="left")
    for column in ("block", "state after", "released holds", "released pages", "webhook calls"):
        view.add_column(column, justify="right" if column != "state after" else "left")
    view.add_column("ms", justify="right")
    view.add_column("what stayed held, and why", overflow="fold")
    for o in outcomes:
        r = o.report
        if r is None:
            view.add_row(str(o.block), "[red]refused[/red]", "", "", "", "", o.error or "")
            continue
        state = f"[green]{r.state}[/green]" if r.state == "offline" else f"[red]{r.state}[/red]"
        view.add_row(
            str(r.block),
            state,
            str(r.released_holds),
            str(r.released_pages),
            str(r.webhook_calls),
            f"{r.duration_ms:.0f}",
            _why(r.failures) or "-",
        )
    out.print(view)


def _print_holders(
    out: Console, fleet: SimulatedFleet, before: dict[str, Holder], after: dict[str, Holder]
) -> None:
    view = Table(title="per holder", title_justify="left")
    view.add_column("holder")
    view.add_column("behaviour")
    for column in ("pages before", "released", "still held", "release calls"):
        view.add_column(column, justify="right")
    view.add_column("its answers", overflow="fold")
    for name, s in fleet.subsystems.items():
        held_before = before[name].held_pages if name in before else 0
        held_after = after[name].held_pages if name in after else 0
        answers: dict[str, int] = {}
        for call in s.calls:
            answers[call.detail] = answers.get(call.detail, 0) + 1
        said = "; ".join(f"{d}" + (f" x{n}" if n > 1 else "") for d, n in answers.items())
        if s.spec.behaviour == "no_handler":
            said = "never asked: the registry has no URL to call"
        view.add_row(
            name,
            s.spec.behaviour,
            str(held_before),
            str(held_before - held_after),
            str(held_after),
            str(len(s.calls)),
            said or "-",
        )
    out.print(view)


def _print_conclusion(out: Console, outcomes: list[Outcome]) -> None:
    offline = [o.block for o in outcomes if o.state == "offline"]
    online = [o for o in outcomes if o.state != "offline"]
    out.print(
        f"{len(offline)} of {len(outcomes)} blocks went offline"
        + (f" ({block_list(offline)})" if offline else "")
        + (f"; {len(online)} stayed online, their released pages stay released:" if online else ".")
    )
    for o in online:
        failures = o.report.failures if o.report is not None else ()
        reasons = sorted({f"{f.holder}: {f.reason}" for f in failures})
        out.print(f"   block {o.block}: " + (", ".join(reasons) or o.error or "?"))


# --- the command -----------------------------------------------------------------------------


def demo(
    registry: Annotated[
        str | None, typer.Option("--registry", help="run against this registry instead")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="PAGEHOLDER_TOKEN", help="its admin token"),
    ] = None,
) -> None:
    """A registry, seven simulated subsystems holding pages in blocks 40-47, and those
    blocks offlined one by one: what was released, what stayed held, and why."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    out = Console(highlight=False, width=width)
    if registry is not None and not token:
        raise fail("--registry needs its admin token (--token, PAGEHOLDER_TOKEN)")
    try:
        asyncio.run(run_demo(out, registry, token if registry is not None else None))
    except PageHolderError as exc:
        raise fail(f"{exc.detail} ({exc.code})", 1) from None
    except (ClientError, ScenarioError) as exc:
        raise fail(str(exc), 1) from None
    except OSError as exc:
        raise fail(exc.strerror or str(exc), 1) from None


def register(cli: typer.Typer) -> None:
    cli.command()(demo)
