"""What the registry keeps and exchanges: holders, holds, and release answers.

A *holder* is the RFC's ``page_holder_ops``: a name and (optionally) a release handler,
here a webhook URL. A *hold* is ``(head pfn, order) -> holder``; in the zone's radix tree
it is one entry whose value is the live ``Holder`` object, whose ``releasing`` state is
a tree mark and whose ``since`` (microseconds since the epoch, unique per change) is the
entry's stamp. ``since`` doubles as the hold's *generation*: a release that started on
one generation never erases a hold of another.

A ``ReleaseCaller`` is how the registry asks a holder for pages back. The real one is
the webhook caller (``webhooks.py``); tests plug in plain coroutines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple, Protocol, get_args

from pageholder.service.core.layout import MemoryBlock, Zone

# Each state or reason is an enum for the code and a Literal of the same values for the
# HTTP schemas (a Literal documents as a plain string enum); _same() proves they agree.

HoldStateName = Literal["held", "releasing", "orphaned"]
BlockStateName = Literal["online", "going_offline", "offline"]
FailureReasonName = Literal[
    "no_release_handler",
    "release_failed",
    "release_timeout",
    "holder_unreachable",
    "deadline_exceeded",
    "lease_expired",
]
SetStatusName = Literal["created", "unchanged", "overwritten"]
OnExpiryName = Literal["keep", "reclaim"]
LeaseStateName = Literal["live", "expired"]


class HoldState(StrEnum):
    HELD = "held"
    RELEASING = "releasing"
    #: held by a holder whose lease expired (derived when read, see ``leases.py``)
    ORPHANED = "orphaned"


class BlockState(StrEnum):
    ONLINE = "online"
    GOING_OFFLINE = "going_offline"
    OFFLINE = "offline"


class FailureReason(StrEnum):
    """Why a hold was not released (the ``reason`` of an offline report's failure)."""

    NO_RELEASE_HANDLER = "no_release_handler"
    RELEASE_FAILED = "release_failed"
    RELEASE_TIMEOUT = "release_timeout"
    HOLDER_UNREACHABLE = "holder_unreachable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    #: the call failed and the holder's lease has expired (it may be dead)
    LEASE_EXPIRED = "lease_expired"


class OnExpiry(StrEnum):
    """What happens to a holder's holds when its lease expires."""

    KEEP = "keep"  # they stay, read ``orphaned``, until reclaimed or revived
    RECLAIM = "reclaim"  # they are erased (in bounded slices)


class LeaseState(StrEnum):
    LIVE = "live"
    EXPIRED = "expired"


@dataclass(slots=True, eq=False)
class Lease:
    """A holder's liveness: it is ``expired`` once ``clock() > deadline``.

    ``clock`` is monotonic (the registry's); ``deadline`` is on that clock. Expiry is
    derived here on every read, so a reader sees it the moment it happens; ``noted`` says
    whether the registry has acted on it yet (``leases.py``). Cost: one clock call.
    """

    ttl_s: float
    clock: Callable[[], float] = field(repr=False)
    deadline: float = 0.0
    noted: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def expired(self) -> bool:
        return self.clock() > self.deadline

    @property
    def state(self) -> LeaseState:
        return LeaseState.EXPIRED if self.expired() else LeaseState.LIVE


@dataclass(slots=True, eq=False)
class Holder:
    """A registered subsystem. Identity matters: tree entries point at this object."""

    name: str
    release_url: str | None = None
    timeout_s: float = 10.0
    description: str = ""
    created: float = 0.0
    token_hash: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    holds: int = 0
    held_pages: int = 0
    last_error: str | None = None
    on_expiry: OnExpiry = OnExpiry.KEEP
    lease: Lease | None = None
    #: its new holds get the NO_HANDLER mark (``zone.py``): true while it has no release
    #: handler, and from the start of a change that takes its handler away
    no_handler_mark: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.no_handler_mark = self.release_url is None

    @property
    def has_release_handler(self) -> bool:
        return self.release_url is not None

    @property
    def lease_ttl_s(self) -> float | None:
        return None if self.lease is None else self.lease.ttl_s

    @property
    def expired(self) -> bool:
        """Its lease has run out (never true without a lease)."""
        lease = self.lease
        return lease is not None and lease.expired()


@dataclass(frozen=True, slots=True)
class Hold:
    """A snapshot of one hold, as the registry hands it out."""

    pfn: int
    order: int
    holder: Holder
    state: HoldState
    since_us: int

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    @property
    def end_pfn(self) -> int:
        return self.pfn + (1 << self.order)

    @property
    def since(self) -> float:
        return self.since_us / 1e6


class SetStatus(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    OVERWRITTEN = "overwritten"


def _same(names: object, enum: type[StrEnum]) -> None:
    assert get_args(names) == tuple(m.value for m in enum), enum.__name__


_same(HoldStateName, HoldState)
_same(BlockStateName, BlockState)
_same(FailureReasonName, FailureReason)
_same(SetStatusName, SetStatus)
_same(OnExpiryName, OnExpiry)
_same(LeaseStateName, LeaseState)


@dataclass(frozen=True, slots=True)
class SetResult:
    """What a set-hold did: the hold, and the holds it replaced (``overwritten``)."""

    status: SetStatus
    hold: Hold
    previous: list[Hold]


@dataclass(frozen=True, slots=True)
class PageInfo:
    """Who holds a page (the RFC's ``page_owner``), and where the page is."""

    pfn: int
    zone: Zone
    block: int
    hold: Hold | None


@dataclass(frozen=True, slots=True)
class BlockUsage:
    block: MemoryBlock
    state: BlockState
    held_pages: int
    holds: int
    removable: bool
    orphaned_pages: int = 0


@dataclass(frozen=True, slots=True)
class Released:
    hold: Hold
    calls: int


class PageRef(NamedTuple):
    """One hold as a release handler sees it: its head pfn and order."""

    pfn: int
    order: int


class PageFailure(NamedTuple):
    reason: FailureReason
    detail: str


@dataclass(slots=True)
class ReleaseAnswer:
    """What a holder answered for the pages of one release request.

    Every requested head pfn ends up in exactly one of ``released`` and ``failed``;
    ``calls`` counts the webhook requests that were made (retries included).
    """

    released: set[int] = field(default_factory=set)
    failed: dict[int, PageFailure] = field(default_factory=dict)
    calls: int = 0

    @classmethod
    def all_released(cls, pages: Sequence[PageRef], calls: int = 1) -> ReleaseAnswer:
        return cls(released={p.pfn for p in pages}, calls=calls)

    @classmethod
    def all_failed(
        cls, pages: Sequence[PageRef], reason: FailureReason, detail: str, calls: int = 1
    ) -> ReleaseAnswer:
        failure = PageFailure(reason, detail)
        return cls(failed={p.pfn: failure for p in pages}, calls=calls)

    def normalized(self, pages: Sequence[PageRef]) -> ReleaseAnswer:
        """Restrict to ``pages``; a page in neither list failed (the webhook contract)."""
        wanted = {p.pfn for p in pages}
        released = self.released & wanted
        failed: dict[int, PageFailure] = {
            pfn: why for pfn, why in self.failed.items() if pfn in wanted and pfn not in released
        }
        missing = PageFailure(FailureReason.RELEASE_FAILED, "not reported released by the holder")
        for pfn in wanted - released - failed.keys():
            failed[pfn] = missing
        return ReleaseAnswer(released, failed, self.calls)


class ReleaseCaller(Protocol):
    """Asks ``holder`` to release ``pages``; must not raise for a holder's refusal.

    ``deadline`` is wall-clock (epoch seconds): the caller gives up by then. An
    exception escaping the caller counts as ``release_failed`` for every page.
    """

    async def __call__(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer: ...
