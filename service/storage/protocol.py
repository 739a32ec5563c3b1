"""What the server needs of a store, whichever it is (``sqlite.Store``, the embedded
default, or ``postgres.PgStore``): the core's ``Journal`` (submit, resume), the reads
recovery makes at start, and the revisions ``GET /v1/events`` reads back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pageholder.service.core.events import Revision
from pageholder.service.core.journal import Journal
from pageholder.service.storage.runs import HoldRun

#: a holder row, in ``core.journal.HolderOp``'s order
HolderRow = tuple[str, str | None, float, str, float, str, str, float | None, str]


class DurableStore(Journal, Protocol):
    #: what log lines and ``serve`` name: a path, or a database without its password
    description: str
    retention: int
    compacted_through: int
    commits: int

    def holders(self) -> list[HolderRow]: ...

    def block_states(self) -> dict[int, str]: ...

    def revision(self) -> int: ...

    def hold_touching(
        self, start: int, end: int, max_order: int
    ) -> tuple[int, int, str] | None: ...

    def hold_runs(self) -> Iterator[HoldRun]: ...

    def read_revisions(self, after: int, limit: int) -> list[Revision]: ...

    def start(self) -> None: ...

    def close_now(self) -> None: ...

    async def close(self) -> None: ...
