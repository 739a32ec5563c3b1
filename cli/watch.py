"""``pageholder watch``: every change of a registry as it commits, one line per event
(JSON lines with ``--json``). It resumes by itself after a dropped connection or a
registry restart; ^C stops it."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from pageholder.cli.console import client_errors, out
from pageholder.cli.options import DEFAULT_URL, AsJson, Token, Url
from pageholder.cli.untrusted import clean
from pageholder.client import Event, PageHolderClient

#: Holds named on a human line; the rest are counted.
SHOWN_HOLDS = 4


def describe(event: Event) -> str:
    """One human line: revision, type, then who and what."""
    what: list[str] = []
    if event.holder is not None:
        what.append(event.holder)
    if event.holds:
        pages = ", ".join(f"{h.pfn}/{h.order}" for h in event.holds[:SHOWN_HOLDS])
        more = len(event.holds) - SHOWN_HOLDS
        what.append(pages + (f" (+{more} more)" if more > 0 else ""))
    if event.previous:
        what.append("from " + ", ".join(event.previous))
    if event.block is not None:
        what.append(f"block {event.block}")
    if event.report is not None and event.report.get("failures"):
        what.append(f"{len(event.report['failures'])} failure(s)")
    part = f" [{event.part}/{event.parts}]" if event.parts > 1 else ""
    return f"{event.rev:>8}  {event.time:%H:%M:%S}  {event.type:<20} {'  '.join(what)}{part}"


def watch(
    since: Annotated[
        int | None, typer.Option(help="start after this revision (default: from now)")
    ] = None,
    types: Annotated[
        str | None, typer.Option(help="comma-separated: hold, holder, block (default: all)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Print every change as it commits, one line per event."""
    kinds = None if types is None else [t.strip() for t in types.split(",") if t.strip()]
    with client_errors(url), PageHolderClient(url, token) as client:
        try:
            events = client.watch(since, types=kinds)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--types") from None
        for event in events:
            if as_json:
                line = json.dumps(dataclasses.asdict(event), default=str, sort_keys=True)
                out.print(clean(line), markup=False, highlight=False, soft_wrap=True)
            else:
                # holder names and reports are a holder's text: no escapes reach the terminal
                out.print(clean(describe(event)), markup=False, soft_wrap=True)
            out.file.flush()


def register(cli: typer.Typer) -> None:
    cli.command()(watch)
