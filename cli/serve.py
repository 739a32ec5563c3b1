"""``pageholder serve`` and ``pageholder openapi``: the registry itself.

The server's modules (FastAPI, the store) are imported inside the commands, so the
client commands beside these start without loading them.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pageholder.cli.console import fail

#: What serve prints are lines to read in a log: never wrapped.
out = Console(highlight=False, soft_wrap=True)


def serve(
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="The address to listen on.")
    ] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="The port to listen on.")] = None,
    layout: Annotated[
        str | None,
        typer.Option(metavar="LAYOUT", help="The memory layout: default, host, or a TOML file."),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="Where state is kept; :memory: keeps nothing."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="postgresql://... keeps state in PostgreSQL, shared by several registries "
            "(one leads, the others stand by); default: SQLite in the data dir.",
        ),
    ] = None,
    advertise_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="This registry's URL, as standbys name it."),
    ] = None,
    leader_ttl: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="The leader lease (PostgreSQL store): a standby takes over this long "
            "after the leader stopped renewing it.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="The uvicorn log level.")
    ] = "info",
) -> None:
    """Run the registry (one process owns the state, or one leader of several on
    PostgreSQL)."""
    if log_level.lower() not in LOG_LEVELS:
        raise fail(f"--log-level {log_level!r}: one of {', '.join(LOG_LEVELS)}")
    import uvicorn
    from pydantic import ValidationError

    from pageholder.service.api import create_app
    from pageholder.service.api.access_log import AccessLog, logs_access
    from pageholder.service.api.auth import load_admin_token
    from pageholder.service.api.deadlines import with_deadlines
    from pageholder.service.core.layout import LayoutError, MemoryLayout
    from pageholder.service.settings import Settings
    from pageholder.service.storage.recovery import Durable, open_durable, open_shared
    from pageholder.service.storage.sqlite import StoreError

    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "layout": layout,
        "data_dir": data_dir,
        "store": store,
        "advertise_url": advertise_url,
        "leader_ttl_s": leader_ttl,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(f"setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    data = None if settings.in_memory else Path(settings.data_dir)
    try:
        memory_layout = MemoryLayout.load(settings.layout)
        durable: Durable | None
        if settings.store is not None:
            durable = open_shared(settings.store, memory_layout)
        else:
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
            f"state in {durable.store.description}: {durable.holders} holders; their holds are "
            "recovered once serving (/healthz answers meanwhile, /readyz once recovered)"
        )
    if admin.generated:
        where = f", saved in {admin.path}" if admin.path else " (not saved: :memory:)"
        out.print(f"admin token{where}:\n  [bold]{admin.token}[/bold]")
    failures: list[str] = []
    server: uvicorn.Server | None = None

    def fatal(reason: str) -> None:
        # Recovery failed after the server started: stop it, and exit non-zero below.
        failures.append(reason)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, layout=memory_layout, durable=durable, on_fatal=fatal)
    # uvicorn's access log lines, written by AccessLog: the same lines at a fraction of
    # the cost, in batches (service/api/access_log.py).
    access = AccessLog(app, sys.stdout) if logs_access(log_level) else None
    config = uvicorn.Config(
        app if access is None else access,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=log_config(log_level),
        workers=1,
        http=with_deadlines(settings.header_timeout_s, settings.body_timeout_s),
        # SIGTERM: in-flight requests get this long, then are cancelled (an offline then
        # settles: what did not answer stays held); a dripping client cannot hold it up.
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        access_log=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        if access is not None:
            access.flush()
    if not server.started and not failures:
        raise typer.Exit(3)  # what uvicorn.run does when the server could not start
    if failures:
        raise fail(f"recovery failed: {failures[0]}")


#: uvicorn's log levels
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, and the registry's own ``pageholder`` loggers (recovery,
    leadership, the store) through the same handler at the same level: without one, their
    INFO lines (``recovered N holds ...``) went nowhere."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["pageholder"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def openapi() -> None:
    """Print the OpenAPI document of the HTTP API (what openapi/openapi.json holds)."""
    from pageholder.service.api import create_app
    from pageholder.service.settings import Settings

    spec = create_app(Settings(data_dir=":memory:")).openapi()
    sys.stdout.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def register(cli: typer.Typer) -> None:
    cli.command()(serve)
    cli.command()(openapi)
