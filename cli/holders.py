"""``pageholder holders`` and ``pageholder holder create|show|update|delete``.

A holder's token and webhook secret are printed once, by ``holder create``: the
registry keeps only a hash of the token and never shows either again.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pageholder.cli.console import emit, err, fail, iso, say, table
from pageholder.cli.options import DEFAULT_URL, AsJson, Token, Url, connect
from pageholder.client import Holder

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
LeaseTtl = Annotated[
    float | None,
    typer.Option(
        "--lease-ttl",
        metavar="SECONDS",
        help="Give the holder a lease (1-3600): without a keepalive for this long, its "
        "holds read orphaned.",
    ),
]
OnExpiry = Annotated[
    str | None,
    typer.Option(
        "--on-expiry",
        metavar="keep|reclaim",
        help="When the lease runs out: keep its holds (orphaned), or reclaim (erase) them.",
    ),
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
        ["name", "release_url", "timeout_s", "lease", "holds", "held_pages", "last_error"],
        [
            (
                h.name,
                h.release_url or ("(hidden)" if h.has_release_handler else "(no handler)"),
                h.timeout_s,
                lease_cell(h),
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
    lease_ttl: LeaseTtl = None,
    on_expiry: OnExpiry = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Register a holder (admin). Prints its token and webhook secret, once: keep them."""
    with connect(url, token) as client:
        created = client.create_holder(
            name,
            release_url,
            timeout_s=timeout,
            description=description,
            lease_ttl_s=lease_ttl,
            on_expiry=on_expiry,
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
    lease_ttl: LeaseTtl = None,
    no_lease: Annotated[
        bool, typer.Option("--no-lease", help="Remove the lease (the holder is trusted to live).")
    ] = False,
    on_expiry: OnExpiry = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Change a holder's release webhook, timeout, description or lease (admin, or the
    holder)."""
    if no_release_url and release_url is not None:
        raise fail("give --release-url or --no-release-url, not both")
    if no_lease and lease_ttl is not None:
        raise fail("give --lease-ttl or --no-lease, not both")
    changes: dict[str, Any] = {"timeout_s": timeout, "description": description}
    if on_expiry is not None:
        changes["on_expiry"] = on_expiry
    if no_release_url or release_url is not None:
        changes["release_url"] = release_url
    if no_lease or lease_ttl is not None:
        changes["lease_ttl_s"] = lease_ttl
    with connect(url, token) as client:
        holder = client.update_holder(name, **changes)
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


def lease_cell(holder: Holder) -> str:
    """``live (ttl 10 s)``, ``EXPIRED (ttl 10 s, reclaim)``, or ``-`` without a lease."""
    lease = holder.lease
    if lease is None:
        return "-"
    state = "EXPIRED" if lease.state == "expired" else lease.state
    extra = ", reclaim" if holder.on_expiry == "reclaim" else ""
    return f"{state} (ttl {lease.ttl_s:g} s{extra})"


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
            ("lease", lease_cell(holder)),
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
