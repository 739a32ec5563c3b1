"""The ``pageholder`` command: the server (``serve``), terminal commands for people,
and the simulator and demo."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pageholder.cli import commands, demo, leases, serve, simulate, watch
from pageholder.cli.console import out

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="pageholder: a networked page-holder registry.",
    pretty_exceptions_enable=False,
    # Plain help: options show their metavars (--url URL), not rich's type column.
    rich_markup_mode=None,
)


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # slow to import: on demand

    try:
        return version("pageholder")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        out.print(f"pageholder {_installed_version()}", markup=False)
        raise typer.Exit()


@cli.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """pageholder: a networked page-holder registry."""


serve.register(cli)
commands.register(cli)
leases.register(cli)
simulate.register(cli)
demo.register(cli)
watch.register(cli)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
