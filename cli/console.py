"""Where the command prints: one stdout console, one stderr console, one error line.

Every refusal a command reports goes through ``fail()`` or ``client_errors()``: one
line on stderr, ``error: <what>``, and a non-zero exit. Text is printed as text, never
as rich markup, since much of it (holder names, webhook answers) comes from elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from pageholder.client import ClientError, PageHolderError

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the ``typer.Exit`` to raise."""
    err.print(f"[red]error:[/red] {escape(message)}")
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
