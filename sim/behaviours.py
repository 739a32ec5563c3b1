"""One running simulated subsystem: its release handler answers as its behaviour says."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from pageholder.client import (
    AsyncKeepalive,
    BatchResult,
    HolderCreated,
    ReleaseRequest,
    ReleaseResult,
    RunningReceiver,
)

from .planning import HoldPlan
from .scenario import FLAKY_RETRY_AFTER_S, SubsystemSpec

log = logging.getLogger("pageholder.simulate")

@dataclass(frozen=True, slots=True)
class ReleaseCall:
    """One release request a subsystem got, and what it answered."""

    request: ReleaseRequest
    answer: str  # all | partial | later | refuse
    detail: str
    released_pages: int
    at: float  # time.monotonic() when answered

    @property
    def nr_pages(self) -> int:
        return sum(1 << p.order for p in self.request.pages)


@dataclass
class Subsystem:
    """A simulated subsystem: its holder, receiver, holds and the calls it answered."""

    spec: SubsystemSpec
    plan: HoldPlan = field(default_factory=HoldPlan)
    holder: HolderCreated | None = None
    running: RunningReceiver | None = None
    #: keeps the lease of a subsystem without a receiver alive (one with a receiver:
    #: the receiver does)
    keepalive: AsyncKeepalive | None = None
    #: head pfn -> order of what it believes it holds (held, not yet released)
    held: dict[int, int] = field(default_factory=dict)
    #: batch-set entries the registry refused (page held by someone else, ...)
    refused: list[BatchResult] = field(default_factory=list)
    calls: list[ReleaseCall] = field(default_factory=list)
    released_pages: int = 0
    #: how many "later" answers it gave (flaky: the first ``spec.temporary`` calls)
    later_answers: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def release_url(self) -> str | None:
        return None if self.holder is None else self.holder.release_url

    @property
    def held_pages(self) -> int:
        return sum(1 << order for order in self.held.values())

    async def on_release(self, request: ReleaseRequest) -> ReleaseResult:
        """The release handler: answer as the behaviour says, and log both ends."""
        nr_pages = sum(1 << p.order for p in request.pages)
        block = "-" if request.block is None else request.block
        log.info(
            "%s <- release request: reason=%s block=%s holds=%d pages=%d",
            self.name,
            request.reason,
            block,
            len(request.pages),
            nr_pages,
        )
        result = await self._answer(request)
        released = {p.pfn for p in request.pages} if result.kind == "all" else set()
        released.update(result.released)
        pages = 0
        for pfn in released:
            order = self.held.pop(pfn, None)
            if order is not None:
                pages += 1 << order
        self.released_pages += pages
        detail = _describe(result, len(request.pages))
        self.calls.append(ReleaseCall(request, result.kind, detail, pages, time.monotonic()))
        log.info("%s -> %s (block=%s)", self.name, detail, block)
        return result

    async def _answer(self, request: ReleaseRequest) -> ReleaseResult:
        behaviour = self.spec.behaviour
        if behaviour == "refusing":
            return ReleaseResult.refuse(f"{self.name}: pages pinned by DMA")
        if behaviour == "slow":
            await asyncio.sleep(self.spec.delay_s)
        elif behaviour == "flaky" and self.later_answers < self.spec.temporary:
            self.later_answers += 1
            return ReleaseResult.later(
                FLAKY_RETRY_AFTER_S,
                error=f"{self.name}: busy ({self.later_answers} of {self.spec.temporary})",
            )
        elif behaviour == "partial":
            heads = sorted(p.pfn for p in request.pages)
            keep = heads[(len(heads) + 1) // 2 :]
            return ReleaseResult.partial(
                heads[: (len(heads) + 1) // 2],
                {pfn: f"{self.name}: page busy with in-flight I/O" for pfn in keep},
            )
        return ReleaseResult.all()


def _describe(result: ReleaseResult, holds: int) -> str:
    if result.kind == "all":
        return f"released all {holds} holds"
    if result.kind == "partial":
        return f"released {len(result.released)} of {holds} holds, refused {len(result.failed)}"
    if result.kind == "later":
        return f"later: HTTP {result.status}, retry after {result.retry_after_s:g} s"
    return f"refused: HTTP {result.status} {result.error}"
