"""What an offline reports: released holds and pages, calls, and a failure per hold
that stayed held (``DESIGN.md``, "Offlining a memory block").

A failure is a plain dict from the start (``OfflineFailure``): a report of 32,768
failures is answered, kept in an event and counted by the metrics as it is, never
copied field by field in one step. ``encoded`` writes it as JSON in slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from pageholder.service.core.bigjson import dumps, encode_text
from pageholder.service.core.events import Encoded


class OfflineFailure(TypedDict):
    holder: str
    pfn: int
    order: int
    reason: str
    detail: str


class ReclaimedHold(TypedDict):
    holder: str
    pfn: int
    order: int


@dataclass(slots=True)
class OfflineReport:
    block: int
    state: str
    released_pages: int = 0
    released_holds: int = 0
    webhook_calls: int = 0
    duration_ms: float = 0.0
    failures: list[OfflineFailure] = field(default_factory=list)
    reclaimed: list[ReclaimedHold] = field(default_factory=list)
    #: the report as its last ``encoded`` wrote it (an answer may reuse it)
    json: str | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data; its lists are shared, not copied. Cost: O(1)."""
        return {
            "block": self.block,
            "state": self.state,
            "released_pages": self.released_pages,
            "released_holds": self.released_holds,
            "webhook_calls": self.webhook_calls,
            "duration_ms": self.duration_ms,
            "reclaimed": self.reclaimed,
            "failures": self.failures,
        }

    async def encoded(self) -> Encoded:
        """The report as compact JSON for an event, its failures encoded in slices.
        Cost: O(failures + reclaimed), in slices."""
        self.json = await encode_text(self.as_dict(), ["failures"])
        return Encoded(self.json, len(self.failures) + len(self.reclaimed))

    def encoded_now(self) -> Encoded:
        """``encoded`` in one step, for the rare report that must change at the commit."""
        self.json = dumps(self.as_dict())
        return Encoded(self.json, len(self.failures) + len(self.reclaimed))
