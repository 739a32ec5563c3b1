"""The options every client command shares, and the client they make.

``--url`` and ``--token`` (or ``PAGEHOLDER_URL`` / ``PAGEHOLDER_TOKEN``) say which
registry and as whom (several URLs, separated by commas: a leader and its standbys,
followed as the client follows them); ``--json`` prints the answer as JSON for scripts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Final

import typer

from pageholder.cli.console import client_errors
from pageholder.client import PageHolderClient

DEFAULT_URL: Final = "http://127.0.0.1:8000"

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="PAGEHOLDER_URL",
        metavar="URL",
        help="The registry to talk to; several URLs separated by commas (a leader and its "
        "standbys): a call goes to whichever leads.",
        show_default=True,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PAGEHOLDER_TOKEN",
        metavar="TOKEN",
        help="Bearer token: the admin's (printed by serve at first start) or a holder's.",
    ),
]
AsJson = Annotated[
    bool,
    typer.Option("--json", help="Print the answer as JSON (times in ISO 8601, as the API)."),
]


@contextmanager
def connect(url: str, token: str | None) -> Iterator[PageHolderClient]:
    """A client whose errors become one line on stderr and exit code 1."""
    with client_errors(url), PageHolderClient(url, token) as client:
        yield client
