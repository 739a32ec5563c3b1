"""The story ``pageholder demo`` tells: a registry, simulated subsystems, a hot-remove.

The story, phase by phase: a registry starts in this process (uvicorn on a free
loopback port, in-memory state, the default 16 GiB layout) unless ``--url`` names
one; seven simulated subsystems (``pageholder.sim.SimulatedFleet``, real release handlers on
loopback) register and hold pages in memory blocks 40-47; the blocks are offlined one by
one; then the registry's offline reports say, per block and per holder, what was
released and what stayed held, and why. Blocks that stay online are part of the story
(a refusing driver, a balloon with no release handler), so the demo exits 0 whenever it
ran to the end. Then a subsystem dies (``demo_death.py``): its lease turns its holds
orphaned, an offline fails fast, and the admin reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pageholder.cli.demo_death import a_subsystem_dies
from pageholder.cli.untrusted import shown
from pageholder.client import (
    AsyncPageHolderClient,
    Holder,
    OfflineFailed,
    OfflineFailure,
    OfflineReport,
    PageHolderError,
)
from pageholder.sim import Scenario, SimulatedFleet, SubsystemSpec, block_list

DEMO_BLOCKS: Final = tuple(range(40, 48))
#: Seconds each offline may take; the slowest subsystem answers in about one.
DEADLINE_S: Final = 10.0


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


# --- the story -----------------------------------------------------------------------------


async def run_demo(
    out: Console, registry: str | None = None, token: str | None = None, keep: bool = False
) -> None:
    """Tell the whole story on ``out``; against ``registry`` if given, else an embedded one.
    With ``keep``, the registry and the subsystems stay up afterwards (until ^C), for a
    person to look at in the console."""
    external = registry is not None
    async with contextlib.AsyncExitStack() as stack:
        if registry is None:
            # Imported here: the server (FastAPI, uvicorn) loads only when it is needed.
            from pageholder.cli.embedded import embedded_registry

            url, token = await stack.enter_async_context(embedded_registry())
            where = "in this process, in memory"
        else:
            url, where = registry, "given by --url"
        client = await stack.enter_async_context(AsyncPageHolderClient(url, token))
        first = await client.get_block(DEMO_BLOCKS[0])
        last = await client.get_block(DEMO_BLOCKS[-1])
        out.print(f"   the console: {url}/ui (admin token: {token})", markup=False)
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
        await a_subsystem_dies(out, client, url, token, DEADLINE_S)
        if keep:
            out.print(
                f"\n[bold]kept up[/bold]: open {url}/ui with the admin token above; "
                "^C ends the demo"
            )
            await asyncio.Event().wait()  # until cancelled (^C)
        if external:
            out.print(f"(the demo's holders are deleted from {url} on the way out)")


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
        return f"   block {outcome.block}: [red]refused[/red]: {shown(outcome.error)}"
    done = (
        f"released {_n(report.released_holds, 'hold')} / {_n(report.released_pages, 'page')} "
        f"in {_n(report.webhook_calls, 'webhook call')}, {report.duration_ms:.0f} ms"
    )
    if report.state == "offline":
        return f"   block {outcome.block}: [green]offline[/green] ({done})"
    kept = sorted({shown(f"{f.holder} ({f.reason})") for f in report.failures})
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
        shown(f"{holder}: {reason} x{n} ({detail})")
        for (holder, reason, detail), n in groups.items()
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
            view.add_row(str(o.block), "[red]refused[/red]", "", "", "", "", shown(o.error or ""))
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
        out.print(f"   block {o.block}: " + shown(", ".join(reasons) or o.error or "?"))
