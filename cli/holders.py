"""``pageholder holders`` and ``pageholder holder create|show|update|delete``.

A holder's token and webhook secret are printed once, by ``holder create``: the
registry keeps only a hash of the token and never shows either again.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pageholder.cli.console import emit, err, fail, iso, say, table
from pageholder.cli.options import DEFAULT_URL, AsJson, Token, Url, connect
from pageholder.client import Holder

# Leases (``--lease-ttl``) are not offered here yet: the registry does not have them.

Name = Annotated[str, typer.Argument(metavar="NAME", help="The holder's name.")]
ReleaseUrl = Annotated[
    str | None,
    typer.Option(
        metavar="URL",
        help="The release webhook the registry calls to ask for pages back.",
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="How long one release call may take (0.1-30; the registry's default is 10).",
    ),
]
Description = Annotated[
    str | None, typer.Option(metavar="TEXT", help="What this holder is, for people.")
]

app = typer.Typer(
    name="holder",
    help="Create, show, change or delete one holder.",
    no_args_is_help=True,
)


def holders(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List holders with what each holds."""
    with connect(url, token) as client:
        items = client.list_holders()
    if as_json:
        emit(items)
        return
    table(
        "holders",
        ["name", "release_url", "timeout_s", "holds", "held_pages", "last_error"],
        [
            (
                h.name,
                h.release_url or ("(hidden)" if h.has_release_handler else "(no handler)"),
                h.timeout_s,
                h.holds,
                h.held_pages,
                h.last_error,
            )
            for h in items
        ],
    )


@app.command()
def create(
    name: Name,
    release_url: ReleaseUrl = None,
    timeout: Timeout = None,
    description: Description = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Register a holder (admin). Prints its token and webhook secret, once: keep them."""
    with connect(url, token) as client:
        created = client.create_holder(
            name, release_url, timeout_s=timeout, description=description
        )
    if as_json:
        emit(created)
    else:
        say(f"created holder {created.name} ({_handler(created)})")
        say(f"token:          {created.token}")
        say(f"webhook secret: {created.webhook_secret}")
    err.print(
        f"[yellow]keep the token and the webhook secret of {created.name}: "
        "they are shown only now[/yellow]",
        markup=True,
    )


@app.command()
def show(name: Name, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """One holder: its release webhook, timeout, holds and last release error."""
    with connect(url, token) as client:
        holder = client.get_holder(name)
    if as_json:
        emit(holder)
        return
    _print_holder(holder)


@app.command()
def update(
    name: Name,
    release_url: ReleaseUrl = None,
    no_release_url: Annotated[
        bool,
        typer.Option(
            "--no-release-url", help="Remove the release webhook (holds without a handler)."
        ),
    ] = False,
    timeout: Timeout = None,
    description: Description = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Change a holder's release webhook, timeout or description (admin, or the holder)."""
    if no_release_url and release_url is not None:
        raise fail("give --release-url or --no-release-url, not both")
    with connect(url, token) as client:
        if no_release_url:
            holder = client.update_holder(
                name, release_url=None, timeout_s=timeout, description=description
            )
        elif release_url is not None:
            holder = client.update_holder(
                name, release_url=release_url, timeout_s=timeout, description=description
            )
        else:
            holder = client.update_holder(name, timeout_s=timeout, description=description)
    if as_json:
        emit(holder)
        return
    _print_holder(holder)


@app.command()
def delete(
    name: Name,
    force: Annotated[
        bool, typer.Option("--force", help="Drop the holder's holds too (admin only).")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Remove a holder. One that still holds pages needs --force (admin)."""
    with connect(url, token) as client:
        client.delete_holder(name, force=force)
    if as_json:
        emit({"result": "deleted", "name": name})
        return
    say(f"deleted holder {name}")


def _handler(holder: Holder) -> str:
    if holder.release_url is not None:
        return f"release: {holder.release_url}"
    return "release URL hidden" if holder.has_release_handler else "no release handler"


def _print_holder(holder: Holder) -> None:
    table(
        f"holder {holder.name}",
        ["field", "value"],
        [
            (
                "release_url",
                holder.release_url
                or ("(hidden)" if holder.has_release_handler else "(no handler)"),
            ),
            ("timeout_s", holder.timeout_s),
            ("description", holder.description),
            ("created", iso(holder.created)),
            ("holds", holder.holds),
            ("held_pages", holder.held_pages),
            ("last_error", holder.last_error),
        ],
    )


def register(cli: typer.Typer) -> None:
    cli.command()(holders)
    cli.add_typer(app)
