"""``pageholder simulate``: the subsystems of a scenario against a registry, logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pageholder.cli.console import client_errors, fail

if TYPE_CHECKING:
    from pageholder.sim.scenario import Scenario


def simulate(
    registry: Annotated[
        str,
        typer.Option(
            "--url",
            "--registry",
            envvar="PAGEHOLDER_URL",
            metavar="URL",
            help="The registry the subsystems register with (several URLs separated by "
            "commas: a leader and its standbys).",
        ),
    ],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="PAGEHOLDER_TOKEN",
            metavar="TOKEN",
            help="The registry's admin token (the subsystems register themselves).",
        ),
    ] = None,
    scenario_file: Annotated[
        Path | None,
        typer.Option("--scenario", metavar="FILE", help="A TOML scenario file.", dir_okay=False),
    ] = None,
    subsystem: Annotated[
        list[str] | None,
        typer.Option(
            "--subsystem",
            metavar="SPEC",
            help="One subsystem, name:behaviour:pattern:count:blocks[:key=value...], "
            "e.g. nic0:cooperative:scattered:64:40-41 (repeatable).",
        ),
    ] = None,
    listen_host: Annotated[
        str,
        typer.Option(metavar="HOST", help="The address the release handlers listen on."),
    ] = "127.0.0.1",
    advertise_host: Annotated[
        str | None,
        typer.Option(
            metavar="HOST",
            help="The host put in the release URLs (default: --listen-host).",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Stop after this many seconds (default: on a signal)."
        ),
    ] = None,
    cleanup: Annotated[
        bool,
        typer.Option("--cleanup", help="Delete the holders (and their holds) on exit."),
    ] = False,
) -> None:
    """Simulated subsystems: real release handlers on local ports that register as
    holders and hold pages, answering release calls as their behaviour says.

    A holder that exists already (a restart) is deleted with its holds and registered
    anew: its webhook secret is shown only when it is created."""
    # The simulator loads only when it runs: other commands start without it.
    from pageholder.sim.behaviours import log
    from pageholder.sim.scenario import Scenario, ScenarioError

    try:
        if (scenario_file is None) == (not subsystem):
            raise ScenarioError("give --scenario FILE or --subsystem SPEC..., one of the two")
        scenario = (
            Scenario.from_toml(scenario_file)
            if scenario_file is not None
            else Scenario.from_specs(subsystem or ())
        )
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with client_errors(registry):
            code = asyncio.run(
                _run(registry, token, scenario, listen_host, advertise_host, duration, cleanup)
            )
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(exc.strerror or str(exc), 1) from None
    raise typer.Exit(code)


async def _run(
    url: str,
    token: str | None,
    scenario: Scenario,
    listen_host: str,
    advertise_host: str | None,
    duration: float | None,
    cleanup: bool,
) -> int:
    from pageholder.client import AsyncPageHolderClient
    from pageholder.sim.behaviours import log
    from pageholder.sim.fleet import SimulatedFleet

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with (
            AsyncPageHolderClient(url, token) as client,
            SimulatedFleet(client, scenario, listen_host, advertise_host, cleanup=cleanup) as fleet,
        ):
            for s in fleet.subsystems.values():
                log.info(
                    "%s: %s = %d pages; release handler: %s",
                    s.name,
                    s.spec.describe(),
                    s.held_pages,
                    s.release_url or "none",
                )
            until = "until SIGINT/SIGTERM" if duration is None else f"for {duration:g} s"
            log.info(
                "simulating %d subsystems holding %d pages against %s, %s",
                len(fleet.subsystems),
                fleet.held_pages,
                url,
                until,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
            log.info("stopping")
            for s in fleet.subsystems.values():
                log.info(
                    "%s: %d release calls, released %d pages, still holds %d pages",
                    s.name,
                    len(s.calls),
                    s.released_pages,
                    s.held_pages,
                )
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def register(cli: typer.Typer) -> None:
    cli.command()(simulate)
