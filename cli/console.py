"""Where the command prints: one stdout console, one stderr console, one error line.

Every refusal a command reports goes through ``fail()`` or ``client_errors()``: one
line on stderr, ``error: <what> (<code>)``, and a non-zero exit. Text from elsewhere
(holder names, webhook answers, a server's ``detail``) is printed as text, never as
rich markup and never with its control characters (``untrusted.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pageholder.cli.untrusted import clean, json_text, shown
from pageholder.client import ClientError, PageHolderError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the ``typer.Exit`` to raise."""
    err.print(f"[red]error:[/red] {shown(message)}")
    return typer.Exit(code)


@contextmanager
def client_errors(url: str) -> Iterator[None]:
    """A registry's refusal or an unreachable registry: one line on stderr, exit code 1."""
    try:
        yield
    except PageHolderError as exc:
        raise fail(f"{url}: {exc.detail} ({exc.code})", 1) from None
    except ClientError as exc:
        raise fail(f"{url}: {exc}", 1) from None


def say(text: str) -> None:
    """One line of plain text on stdout, cleaned, never read as markup."""
    out.print(clean(text), markup=False, emoji=False, soft_wrap=True)


def emit(data: Any) -> None:
    """``data`` (results of the client: dataclasses, lists, dicts) as JSON on stdout.

    Times are written as the API writes them (ISO 8601, ``...Z``): the client's models
    are turned back into JSON by the same serializer the server uses.
    """
    from pydantic_core import to_jsonable_python

    sys.stdout.write(json_text(to_jsonable_python(data)) + "\n")
    sys.stdout.flush()


def iso(when: datetime | None) -> str:
    """A time as the API writes it: ``2026-12-01T16:46:16.066595Z``."""
    from pydantic_core import to_jsonable_python

    return "" if when is None else str(to_jsonable_python(when))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout. Cells are shown as text (``untrusted.shown``); a ``Text`` cell
    is the command's own styling and is kept as it is."""
    view = Table(title=shown(title), title_justify="left")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*(_cell(v) for v in row))
    out.print(view)


def _cell(value: Any) -> str | Text:
    if isinstance(value, Text):
        return value
    return "" if value is None else shown(value)
