"""Terminal commands for people: ``pageholder holders|hold|unset|owner|release|zones|
blocks|offline|online``. Human tables by default, ``--json`` for scripts; a server's
refusal is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pageholder.cli.console import client_errors, err, out
from pageholder.client import (
    Block,
    ClientError,
    Holder,
    OfflineFailed,
    OfflineReport,
    PageHolderClient,
    PageHolderError,
)

Url = Annotated[
    str, typer.Option("--url", envvar="PAGEHOLDER_URL", help="registry URL", show_default=True)
]
Token = Annotated[
    str | None, typer.Option("--token", envvar="PAGEHOLDER_TOKEN", help="bearer token")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
DEFAULT_URL = "http://127.0.0.1:8000"


@contextmanager
def connect(url: str, token: str | None) -> Iterator[PageHolderClient]:
    """A client whose errors become one line on stderr and exit code 1."""
    with client_errors(url), PageHolderClient(url, token) as client:
        yield client


def emit(data: Any) -> None:
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    out.print_json(json.dumps(plain(data), default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    out.print(view)


def lease_cell(holder: Holder) -> str:
    """``live (ttl 10 s)``, ``EXPIRED (ttl 10 s, reclaim)``, or ``-`` without a lease."""
    lease = holder.lease
    if lease is None:
        return "-"
    state = "[red]EXPIRED[/red]" if lease.state == "expired" else lease.state
    extra = ", reclaim" if holder.on_expiry == "reclaim" else ""
    return f"{state} (ttl {lease.ttl_s:g} s{extra})"


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


def hold(
    pfn: int,
    holder: Annotated[str | None, typer.Option(help="whose hold (the admin must say)")] = None,
    order: Annotated[int, typer.Option(help="hold 2**order pages")] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace another hold (admin)")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Hold 2**order pages from PFN."""
    with connect(url, token) as client:
        result = client.hold(pfn, holder=holder, order=order, overwrite=overwrite)
    if as_json:
        emit(result)
        return
    previous = f" (was {result.previous})" if result.previous else ""
    out.print(
        f"{result.result}: pfn {result.pfn} order {result.order} -> {result.holder}{previous}"
    )


def unset(pfn: int, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Drop the hold whose head is PFN."""
    with connect(url, token) as client:
        client.unset(pfn)
    out.print(f"unset: pfn {pfn}")


def owner(pfn: int, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Who holds PFN (page_owner)."""
    with connect(url, token) as client:
        page = client.get_page(pfn)
    if as_json:
        emit(page)
        return
    where = f"zone {page.zone}, block {page.block}"
    if not page.held:
        out.print(f"pfn {pfn} is free ({where})")
        return
    out.print(
        f"pfn {pfn} is held by {page.holder} ({page.state}; order-{page.order} hold at pfn "
        f"{page.head_pfn} since {page.since}; {where})"
    )


def release(pfn: int, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Ask PFN's holder to release it through its webhook."""
    with connect(url, token) as client:
        released = client.release(pfn)
    if as_json:
        emit(released)
        return
    out.print(
        f"released: order-{released.order} hold at pfn {released.pfn} by {released.holder} "
        f"({released.webhook_calls} webhook call(s))"
    )


def zones(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """The machine's zones with held pages."""
    with connect(url, token) as client:
        items = client.list_zones()
    if as_json:
        emit(items)
        return
    table(
        "zones",
        ["zone", "start_pfn", "spanned", "present", "held_pages", "holds"],
        [
            (z.id, z.start_pfn, z.spanned_pages, z.present_pages, z.held_pages, z.holds)
            for z in items
        ],
    )


def blocks(
    state: Annotated[str | None, typer.Option(help="online | going_offline | offline")] = None,
    zone: Annotated[str | None, typer.Option(help='e.g. "0/Normal"')] = None,
    held: Annotated[bool, typer.Option("--held", help="only blocks with holds")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Memory blocks: state, held pages, and whether they are removable."""
    with connect(url, token) as client:
        items = list(client.iter_blocks(state=state, zone=zone, held=True if held else None))
    if as_json:
        emit(items)
        return
    table(
        "memory blocks",
        ["block", "start_pfn", "zone", "state", "held_pages", "holds", "removable"],
        [_block_row(b) for b in items],
    )


def _block_row(b: Block) -> tuple[Any, ...]:
    removable = "yes" if b.removable else "[red]no[/red]"
    zone = b.zone if len(b.zones) == 1 else "+".join(b.zones) + " (multizone)"
    return (b.id, b.start_pfn, zone, b.state, b.held_pages, b.holds, removable)


def offline(
    block_ids: Annotated[list[int], typer.Argument(metavar="BLOCK...", help="memory blocks")],
    deadline: Annotated[float, typer.Option(help="seconds each offline may take")] = 30.0,
    expect: Annotated[
        str, typer.Option(help="the state every block must end in for exit 0: offline | online")
    ] = "offline",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Take memory blocks offline (hot-remove), one after the other, with a table of what
    refused and why. Exit 1 unless every block ends as --expect says (by default:
    offline; `--expect online` checks that an offline is refused)."""
    if expect not in ("offline", "online"):
        err.print(f"[red]error:[/red] --expect must be offline or online, not {expect!r}")
        raise typer.Exit(2)
    reports: list[OfflineReport] = []
    errors: list[tuple[int, str]] = []
    with connect(url, token) as client, _progress(as_json) as progress:
        task = progress.add_task("offlining", total=len(block_ids))
        for block_id in block_ids:
            progress.update(task, description=f"block {block_id}")
            try:
                reports.append(client.offline_block(block_id, deadline_s=deadline))
            except OfflineFailed as exc:
                if exc.report is None:
                    errors.append((block_id, exc.detail))
                else:
                    reports.append(exc.report)
            except PageHolderError as exc:
                errors.append((block_id, f"{exc.detail} ({exc.code})"))
            progress.advance(task)
    failed = bool(errors) or any(r.state != expect for r in reports)
    if as_json:
        emit({"reports": reports, "errors": [{"block": b, "error": e} for b, e in errors]})
    else:
        _print_reports(reports, errors)
    if failed:
        raise typer.Exit(1)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )


def _print_reports(reports: list[OfflineReport], errors: list[tuple[int, str]]) -> None:
    table(
        "offline",
        ["block", "state", "released_holds", "released_pages", "webhook_calls", "ms", "failures"],
        [
            (
                r.block,
                r.state,
                r.released_holds,
                r.released_pages,
                r.webhook_calls,
                round(r.duration_ms),
                len(r.failures),
            )
            for r in reports
        ]
        + [(block, "refused", "", "", "", "", error) for block, error in errors],
    )
    failures = [(r.block, f) for r in reports for f in r.failures]
    if failures:
        table(
            "what stayed held, and why",
            ["block", "holder", "pfn", "order", "reason", "detail"],
            [(b, f.holder, f.pfn, f.order, f.reason, f.detail) for b, f in failures],
        )


def online(
    block_ids: Annotated[list[int], typer.Argument(metavar="BLOCK...", help="memory blocks")],
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Bring offline memory blocks back online."""
    with connect(url, token) as client:
        for block_id in block_ids:
            block = client.online_block(block_id)
            out.print(f"block {block.id}: {block.state}")


def wait(
    holder: Annotated[
        list[str], typer.Option("--holder", help="a holder that must be registered and hold pages")
    ],
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 60.0,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Wait until the registry answers and every --holder holds pages (for scripts)."""
    deadline = time.monotonic() + timeout
    missing = set(holder)
    while True:
        try:
            with PageHolderClient(url, token) as client:
                ready = {h.name for h in client.list_holders() if h.holds > 0}
            missing = set(holder) - ready
            if not missing:
                out.print(f"ready: {', '.join(sorted(holder))}")
                return
        except ClientError:
            pass
        if time.monotonic() > deadline:
            waiting = ", ".join(sorted(missing)) or "the registry"
            err.print(f"[red]error:[/red] {url}: still waiting for {waiting} after {timeout:g} s")
            raise typer.Exit(1)
        time.sleep(0.5)


def register(cli: typer.Typer) -> None:
    for command in (holders, hold, unset, owner, release, zones, blocks, offline, online, wait):
        cli.command()(command)
