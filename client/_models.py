"""What the API answers, as frozen dataclasses with parsed datetimes.

These mirror the server's response bodies (``openapi/openapi.json``) but are defined
here: the client never imports the service. Fields the server adds later are ignored;
values that grow over time (``state``, ``result``, ``status``, ``reason``) are plain
``str`` so that a newer server does not break an older client. ``parse(cls, data)``
turns decoded JSON into one of them, or raises ``ValueError`` when it does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = [
    "BatchResult",
    "Block",
    "BlockPage",
    "FieldError",
    "Hold",
    "HoldPage",
    "HoldResult",
    "Holder",
    "HolderCreated",
    "Lease",
    "OfflineFailure",
    "OfflineReport",
    "PageInfo",
    "Reclaimed",
    "ReclaimedHold",
    "Released",
    "Zone",
    "parse",
]

T = TypeVar("T")


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def parse(cls: type[T], data: Any) -> T:
    """``data`` (decoded JSON) as a ``cls``; ``ValueError`` if it does not fit."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        # pydantic is imported on the first answer, not with the client: a command that
        # only prints its help starts without it.
        from pydantic import TypeAdapter

        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    parsed: T = adapter.validate_python(data)
    return parsed


# -- holders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A holder's lease: ``state`` live or expired; ``expires_at`` without a keepalive."""

    state: str
    expires_at: datetime
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Holder:
    """A registered holder and how much it holds; ``lease`` is None without a lease."""

    name: str
    release_url: str | None
    timeout_s: float
    description: str
    created: datetime
    holds: int
    held_pages: int
    last_error: str | None
    #: Whether it has a release handler; ``release_url`` itself is shown only to the
    #: admin and to the holder itself (``None`` for other holders). A registry that does
    #: not say is one that shows every URL.
    has_release_handler: bool = field(default=False, kw_only=True)
    lease_ttl_s: float | None = field(default=None, kw_only=True)
    on_expiry: str = field(default="keep", kw_only=True)
    lease: Lease | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.release_url is not None and not self.has_release_handler:
            object.__setattr__(self, "has_release_handler", True)


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What ``reclaim()`` erased of an expired holder's holds."""

    reclaimed_holds: int
    reclaimed_pages: int


@dataclass(frozen=True, slots=True)
class HolderCreated(Holder):
    """A new holder with its bearer ``token`` and ``webhook_secret``: shown only once."""

    token: str
    webhook_secret: str


# -- pages and holds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageInfo:
    """Who holds one page (the RFC's ``page_owner``); hold fields are None when free."""

    pfn: int
    node: int
    zone: str
    block: int
    held: bool
    holder: str | None
    head_pfn: int | None
    order: int | None
    state: str | None
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Hold:
    """``2**order`` pages from ``pfn`` held by ``holder``; ``state`` is held, releasing or
    orphaned (its holder's lease expired)."""

    pfn: int
    order: int
    holder: str
    state: str
    since: datetime


@dataclass(frozen=True, slots=True)
class HoldResult(Hold):
    """The hold after ``hold()``: ``result`` is created, unchanged or overwritten."""

    result: str
    previous: str | None = None
    replaced: tuple[Hold, ...] = ()


@dataclass(frozen=True, slots=True)
class Released:
    """A hold given back by its holder's release handler."""

    result: str
    holder: str
    pfn: int
    order: int
    webhook_calls: int


@dataclass(frozen=True, slots=True)
class HoldPage:
    """One page of ``list_holds``; pass ``next_cursor`` back for the next one."""

    items: tuple[Hold, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One entry of a batch: ``status`` created/unchanged/overwritten/unset/error."""

    pfn: int
    order: int
    status: str
    code: str | None = None
    detail: str | None = None


# -- zones and blocks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone (``id`` is ``"{node}/{name}"``) with what is held in it."""

    id: str
    node: int
    name: str
    start_pfn: int
    spanned_pages: int
    present_pages: int
    held_pages: int
    holds: int
    orphaned_pages: int = 0


@dataclass(frozen=True, slots=True)
class Block:
    """A memory block; ``state`` is online, going_offline or offline."""

    id: int
    start_pfn: int
    nr_pages: int
    node: int
    zone: str
    zones: tuple[str, ...]
    state: str
    held_pages: int
    holds: int
    removable: bool
    orphaned_pages: int = 0


@dataclass(frozen=True, slots=True)
class BlockPage:
    """One page of ``list_blocks``; pass ``next_cursor`` back for the next one."""

    items: tuple[Block, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class OfflineFailure:
    """A hold that was not released, and why (``reason``: no_release_handler, ...)."""

    holder: str
    pfn: int
    order: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReclaimedHold:
    """An orphaned hold an offline erased without a call (``reclaim_orphans``)."""

    holder: str
    pfn: int
    order: int


@dataclass(frozen=True, slots=True)
class OfflineReport:
    """What an offline did: the block's final ``state`` and every failure."""

    block: int
    state: str
    released_pages: int
    released_holds: int
    webhook_calls: int
    duration_ms: float
    failures: tuple[OfflineFailure, ...]
    reclaimed: tuple[ReclaimedHold, ...] = ()


# -- errors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rejected field of an ``invalid_request`` problem."""

    field: str
    message: str
