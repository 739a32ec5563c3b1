"""Terminal commands for people: ``pageholder hold|unset|owner|release|zones|blocks|
offline|online|wait`` (holders: ``holders.py``). Human tables by default, ``--json``
for scripts; a server's refusal is one line on stderr and a non-zero exit, never a
traceback.

Nothing here imports the server: a client command starts without FastAPI.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from pageholder.cli import holders as holder_commands
from pageholder.cli.console import emit, err, fail, iso, say, table
from pageholder.cli.options import DEFAULT_URL, AsJson, Token, Url, connect
from pageholder.cli.untrusted import shown
from pageholder.client import (
    Block,
    ClientError,
    OfflineFailed,
    OfflineReport,
    PageHolderClient,
    PageHolderError,
)

if TYPE_CHECKING:
    from rich.progress import Progress

Pfn = Annotated[int, typer.Argument(metavar="PFN", help="A page frame number.")]
BlockIds = Annotated[list[int], typer.Argument(metavar="BLOCK", help="Memory block numbers.")]


def hold(
    pfn: Pfn,
    holder: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The holder to hold for. A holder's token holds for itself; "
            "the admin token must name one.",
        ),
    ] = None,
    order: Annotated[
        int, typer.Option(metavar="N", help="Hold 2**N pages from PFN (PFN aligned to them).")
    ] = 0,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace holds of other holders (admin only)."),
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Hold pages from PFN, 2**N of them with --order N (page_set_hold)."""
    with connect(url, token) as client:
        result = client.hold(pfn, holder=holder, order=order, overwrite=overwrite)
    if as_json:
        emit(result)
        return
    previous = f" (was {result.previous})" if result.previous else ""
    say(f"{result.result}: pfn {result.pfn} order {result.order} -> {result.holder}{previous}")


def unset(pfn: Pfn, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Drop the hold whose head is PFN (page_unset_hold)."""
    with connect(url, token) as client:
        client.unset(pfn)
    if as_json:
        emit({"result": "unset", "pfn": pfn})
        return
    say(f"unset: pfn {pfn}")


def owner(pfn: Pfn, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Who holds PFN (page_owner)."""
    with connect(url, token) as client:
        page = client.owner(pfn)
    if as_json:
        emit(page)
        return
    where = f"zone {page.zone}, block {page.block}"
    if not page.held:
        say(f"pfn {pfn} is free ({where})")
        return
    say(
        f"pfn {pfn} is held by {page.holder} ({page.state}; order-{page.order} hold at pfn "
        f"{page.head_pfn} since {iso(page.since)}; {where})"
    )


def release(pfn: Pfn, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """Ask PFN's holder to give its hold back through its release webhook (admin)."""
    with connect(url, token) as client:
        released = client.release(pfn)
    if as_json:
        emit(released)
        return
    say(
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
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="Only blocks in STATE: online, going_offline, offline."),
    ] = None,
    zone: Annotated[
        str | None, typer.Option(metavar="ZONE", help='Only blocks of ZONE, e.g. "0/Normal".')
    ] = None,
    held: Annotated[bool, typer.Option("--held", help="Only blocks with holds.")] = False,
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
    removable = "yes" if b.removable else Text("no", style="red")
    zone = b.zone if len(b.zones) == 1 else "+".join(b.zones) + " (multizone)"
    return (b.id, b.start_pfn, zone, b.state, b.held_pages, b.holds, removable)


def offline(
    block_ids: BlockIds,
    deadline: Annotated[
        float, typer.Option(metavar="SECONDS", help="How long each offline may take.")
    ] = 30.0,
    expect: Annotated[
        str,
        typer.Option(
            metavar="STATE",
            help="The state every block must end in for exit 0: offline, or online to "
            "check that an offline is refused.",
        ),
    ] = "offline",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Take memory blocks offline (hot-remove), one after the other, with a table of what
    refused and why. Exit 1 unless every block ends as --expect says; a block the
    registry refuses outright (no such block, not online) is one line on stderr."""
    if expect not in ("offline", "online"):
        raise fail(f"--expect must be offline or online, not {expect!r}")
    reports: list[OfflineReport] = []
    errors: list[tuple[int, PageHolderError]] = []
    with connect(url, token) as client, _progress(as_json) as progress:
        task = progress.add_task("offlining", total=len(block_ids))
        for block_id in block_ids:
            progress.update(task, description=f"block {block_id}")
            try:
                reports.append(client.offline(block_id, deadline_s=deadline))
            except OfflineFailed as exc:
                if exc.report is None:
                    errors.append((block_id, exc))
                else:
                    reports.append(exc.report)
            except PageHolderError as exc:
                errors.append((block_id, exc))
            progress.advance(task)
    for block_id, refusal in errors:
        err.print(f"[red]error:[/red] {shown(url)}: block {block_id}: {_refusal(refusal)}")
    failed = bool(errors) or any(r.state != expect for r in reports)
    if as_json:
        emit(
            {
                "reports": reports,
                "errors": [{"block": b, "code": e.code, "error": e.detail} for b, e in errors],
            }
        )
    elif reports:
        _print_reports(reports)
    if failed:
        raise typer.Exit(1)


def _refusal(exc: PageHolderError) -> str:
    return shown(f"{exc.detail} ({exc.code})")


def _progress(quiet: bool) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
        transient=True,
    )


def _print_reports(reports: list[OfflineReport]) -> None:
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
        ],
    )
    failures = [(r.block, f) for r in reports for f in r.failures]
    if failures:
        table(
            "what stayed held, and why",
            ["block", "holder", "pfn", "order", "reason", "detail"],
            [(b, f.holder, f.pfn, f.order, f.reason, f.detail) for b, f in failures],
        )


def online(
    block_ids: BlockIds, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Bring offline memory blocks back online."""
    done: list[Block] = []
    with connect(url, token) as client:
        for block_id in block_ids:
            block = client.online(block_id)
            done.append(block)
            if not as_json:
                say(f"block {block.id}: {block.state}")
    if as_json:
        emit(done)


def wait(
    holder: Annotated[
        list[str],
        typer.Option(
            "--holder",
            metavar="NAME",
            help="A holder that must be registered and hold pages (repeatable).",
        ),
    ],
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Give up after this many seconds.")
    ] = 60.0,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
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
                if as_json:
                    emit({"ready": sorted(holder)})
                else:
                    say(f"ready: {', '.join(sorted(holder))}")
                return
        except ClientError:
            pass
        if time.monotonic() > deadline:
            waiting = ", ".join(sorted(missing)) or "the registry"
            raise fail(f"{url}: still waiting for {waiting} after {timeout:g} s", 1)
        time.sleep(0.5)


def register(cli: typer.Typer) -> None:
    holder_commands.register(cli)
    for command in (hold, unset, owner, release, zones, blocks, offline, online, wait):
        cli.command()(command)
