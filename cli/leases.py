"""``pageholder reclaim NAME``: erase every hold of a holder whose lease expired."""

from __future__ import annotations

import typer

from pageholder.cli.console import emit, say
from pageholder.cli.options import DEFAULT_URL, AsJson, Token, Url, connect


def reclaim(
    name: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Erase every hold of holder NAME, whose lease expired, without asking it (admin).

    Refused (lease_not_expired) while its lease is live: a live holder is asked with
    `release` or `offline` instead."""
    with connect(url, token) as client:
        done = client.reclaim(name)
    if as_json:
        emit(done)
        return
    say(
        f"reclaimed {done.reclaimed_holds} hold(s) = {done.reclaimed_pages} page(s) of "
        f"expired holder {name}"
    )


def register(cli: typer.Typer) -> None:
    cli.command()(reclaim)
