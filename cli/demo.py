"""``pageholder demo``: a registry, a fleet of simulated subsystems, and a hot-remove.

The story itself is ``demo_story.py``; it (and the simulator, and the server it starts)
is imported only when the demo runs, so that the other commands start without them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from pageholder.cli.console import fail
from pageholder.client import ClientError, PageHolderError


def demo(
    registry: Annotated[
        str | None,
        typer.Option(
            "--url",
            "--registry",
            metavar="URL",
            help="Run against this registry instead of one started in this process.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="PAGEHOLDER_TOKEN",
            metavar="TOKEN",
            help="The admin token of the registry given by --url.",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Keep the registry and the subsystems up after the story (until ^C), to "
            "look at them in the console (/ui).",
        ),
    ] = False,
) -> None:
    """A registry, seven simulated subsystems holding pages in blocks 40-47, and those
    blocks offlined one by one: what was released, what stayed held, and why."""
    from rich.console import Console

    from pageholder.cli.demo_story import run_demo
    from pageholder.sim import ScenarioError

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    out = Console(highlight=False, width=width)
    if registry is not None and not token:
        raise fail("--url needs its admin token (--token, PAGEHOLDER_TOKEN)")
    try:
        asyncio.run(run_demo(out, registry, token if registry is not None else None, keep))
    except PageHolderError as exc:
        raise fail(f"{exc.detail} ({exc.code})", 1) from None
    except (ClientError, ScenarioError) as exc:
        raise fail(str(exc), 1) from None
    except OSError as exc:
        raise fail(exc.strerror or str(exc), 1) from None


def register(cli: typer.Typer) -> None:
    cli.command()(demo)
