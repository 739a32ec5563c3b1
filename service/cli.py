"""The ``pageholder`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from . import commands, demo, simulate
from .api import create_app
from .api.auth import load_admin_token
from .layout import LayoutError, MemoryLayout
from .recovery import open_durable
from .settings import Settings
from .store import StoreError

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="pageholder: a networked page-holder registry.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    layout: Annotated[
        str | None, typer.Option(help="memory layout: default, host, or a TOML file")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="where state is kept; :memory: keeps nothing")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the registry (one process owns the state)."""
    given: dict[str, Any] = {"host": host, "port": port, "layout": layout, "data_dir": data_dir}
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    data = None if settings.in_memory else Path(settings.data_dir)
    try:
        memory_layout = MemoryLayout.load(settings.layout)
        durable = None if data is None else open_durable(data, memory_layout)
        admin = load_admin_token(settings.admin_token, data)
    except (LayoutError, StoreError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"data dir {settings.data_dir}: {exc.strerror or exc}") from None
    settings = settings.model_copy(update={"admin_token": admin.token})
    url = f"http://{settings.host}:{settings.port}"
    out.print(f"pageholder serving on [bold]{url}[/bold]  (API docs: {url}/docs)")
    out.print(memory_layout.describe())
    if durable is None:
        out.print(
            "[yellow]--data-dir :memory: keeps nothing: holders and holds are lost when "
            "the server stops[/yellow]"
        )
    else:
        out.print(
            f"state in {durable.store.path}: {len(durable.snapshot.holders)} holders, "
            f"{len(durable.snapshot.holds)} holds"
        )
    if admin.generated:
        where = f", saved in {admin.path}" if admin.path else " (not saved: :memory:)"
        out.print(f"admin token{where}:\n  [bold]{admin.token}[/bold]")
    app = create_app(settings, layout=memory_layout, durable=durable)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, workers=1)


@cli.command()
def openapi() -> None:
    """Print the OpenAPI document of the HTTP API (what openapi/openapi.json holds)."""
    spec = create_app(Settings(data_dir=":memory:")).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")


commands.register(cli)
simulate.register(cli)
demo.register(cli)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
