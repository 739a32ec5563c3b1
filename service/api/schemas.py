"""Request and response bodies of API v1, with the descriptions and examples /docs shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pageholder.service.core.layout import MemoryBlock, Zone
from pageholder.service.core.model import (
    BlockStateName,
    FailureReasonName,
    Hold,
    Holder,
    HoldStateName,
    Lease,
    LeaseStateName,
    OnExpiry,
    OnExpiryName,
    SetStatusName,
)
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.rules import (
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    HOLDER_NAME_PATTERN,
    MAX_DEADLINE_S,
    MAX_LEASE_TTL_S,
    MAX_PFN,
    MAX_RANGE_PAGES,
    MAX_TIMEOUT_S,
    MIN_LEASE_TTL_S,
    MIN_TIMEOUT_S,
)

Pfn = Annotated[int, Field(ge=0, le=MAX_PFN, description="page frame number", examples=[1048576])]
Order = Annotated[
    int,
    Field(ge=0, le=MAX_ORDER, description="the hold covers 2**order pages from an aligned pfn"),
]
HolderName = Annotated[
    str,
    Field(
        pattern=HOLDER_NAME_PATTERN,
        description="unique holder name",
        examples=["nic0"],
    ),
]


LeaseTtl = Annotated[
    float | None,
    Field(
        ge=MIN_LEASE_TTL_S,
        le=MAX_LEASE_TTL_S,
        description="the holder's lease, seconds: it must send a keepalive within that "
        "time or its holds turn orphaned; null = no lease (trusted to live)",
        examples=[10],
    ),
]
ON_EXPIRY = (
    "when the lease expires: keep the holds (they read orphaned until reclaimed or the "
    f"holder revives), or reclaim (erase) them; one of {[e.value for e in OnExpiry]}"
)


def to_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- holders ----------------------------------------------------------------------------


class HolderCreate(Request):
    name: HolderName
    release_url: str | None = Field(
        default=None,
        description="webhook called to release pages; none = holds without a release handler",
        examples=["http://127.0.0.1:9100/release"],
        max_length=2048,
    )
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S,
        ge=MIN_TIMEOUT_S,
        le=MAX_TIMEOUT_S,
        description="per-call webhook timeout",
    )
    description: str = Field(default="", max_length=1024, examples=["RDMA registrations of mlx0"])
    lease_ttl_s: LeaseTtl = None
    on_expiry: OnExpiryName = Field(default="keep", description=ON_EXPIRY)


class HolderPatch(Request):
    release_url: str | None = Field(default=None, max_length=2048)
    timeout_s: float | None = Field(default=None, ge=MIN_TIMEOUT_S, le=MAX_TIMEOUT_S)
    description: str | None = Field(default=None, max_length=1024)
    lease_ttl_s: LeaseTtl = None
    on_expiry: OnExpiryName | None = Field(default=None, description=ON_EXPIRY)


class LeaseOut(BaseModel):
    """A holder's lease: live until ``expires_at`` unless it sends a keepalive."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"state": "live", "expires_at": "2026-11-26T15:00:10.000000Z", "ttl_s": 10.0}
            ]
        }
    )

    state: LeaseStateName
    expires_at: datetime = Field(description="when it expires (or expired) without a keepalive")
    ttl_s: float

    @classmethod
    def of(cls, lease: Lease, expires_at: float) -> LeaseOut:
        return cls(state=lease.state.value, expires_at=to_time(expires_at), ttl_s=lease.ttl_s)


class Reclaimed(BaseModel):
    reclaimed_holds: int
    reclaimed_pages: int


class HolderOut(BaseModel):
    name: str
    release_url: str | None = Field(
        description="its release webhook; shown only to the admin and to the holder itself "
        "(null for everyone else: see has_release_handler)"
    )
    has_release_handler: bool = Field(description="whether it has a release_url")
    timeout_s: float
    description: str
    created: datetime
    holds: int = Field(description="number of holds")
    held_pages: int = Field(description="pages covered by its holds")
    last_error: str | None = Field(description="the last release failure its handler reported")
    lease_ttl_s: float | None = Field(default=None, description="null: no lease")
    on_expiry: OnExpiryName = Field(default="keep", description=ON_EXPIRY)
    lease: LeaseOut | None = Field(default=None, description="null without a lease")

    @classmethod
    def of(
        cls, holder: Holder, *, show_url: bool, expires_at: float | None = None
    ) -> HolderOut:
        """``holder`` as shown to a reader; ``show_url`` only for its admin or itself (a
        release URL can carry a secret in its query string). ``expires_at``: the lease's
        deadline as epoch seconds (``Leases.expires_at``)."""
        lease = holder.lease
        return cls(
            name=holder.name,
            release_url=holder.release_url if show_url else None,
            has_release_handler=holder.release_url is not None,
            timeout_s=holder.timeout_s,
            description=holder.description,
            created=to_time(holder.created),
            holds=holder.holds,
            held_pages=holder.held_pages,
            last_error=holder.last_error,
            lease_ttl_s=holder.lease_ttl_s,
            on_expiry=holder.on_expiry.value,
            lease=None
            if lease is None or expires_at is None
            else LeaseOut.of(lease, expires_at),
        )


class HolderCreated(HolderOut):
    token: str = Field(description="bearer token of this holder; shown once, keep it")
    webhook_secret: str = Field(
        description="Standard Webhooks secret that signs release calls; shown once"
    )


class HolderList(BaseModel):
    items: list[HolderOut]


# -- pages and holds ----------------------------------------------------------------------


class PageOut(BaseModel):
    """Who holds one page (the RFC's ``page_owner``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pfn": 1048600,
                    "node": 0,
                    "zone": "0/Normal",
                    "block": 32,
                    "held": True,
                    "holder": "nic0",
                    "head_pfn": 1048576,
                    "order": 9,
                    "state": "held",
                    "since": "2026-11-26T15:00:00.000000Z",
                }
            ]
        }
    )

    pfn: int
    node: int
    zone: str = Field(examples=["0/Normal"])
    block: int
    held: bool
    holder: str | None
    head_pfn: int | None = Field(description="first pfn of the hold covering this page")
    order: int | None
    state: HoldStateName | None
    since: datetime | None


class HoldRequest(Request):
    holder: HolderName | None = Field(
        default=None, description="whose hold; defaults to the calling holder"
    )
    order: Order = 0
    overwrite: bool = Field(default=False, description="replace another hold (admin only)")


class HoldOut(BaseModel):
    pfn: int
    order: int
    holder: str
    state: HoldStateName
    since: datetime

    @classmethod
    def of(cls, hold: Hold) -> HoldOut:
        return cls(
            pfn=hold.pfn,
            order=hold.order,
            holder=hold.holder.name,
            state=hold.state.value,
            since=to_time(hold.since),
        )


class HoldResult(HoldOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pfn": 1048576,
                    "order": 9,
                    "holder": "nic0",
                    "state": "held",
                    "since": "2026-11-26T15:00:00.000000Z",
                    "result": "created",
                    "previous": None,
                    "replaced": [],
                }
            ]
        }
    )

    result: SetStatusName
    previous: str | None = Field(
        default=None, description="holder of the (first) hold that was overwritten"
    )
    replaced: list[HoldOut] = Field(default_factory=list, description="every overwritten hold")


class ReleaseOut(BaseModel):
    result: Literal["released"]
    holder: str
    pfn: int = Field(description="head pfn of the released hold")
    order: int
    webhook_calls: int


# -- zones and blocks ---------------------------------------------------------------------


class ZoneOut(BaseModel):
    id: str = Field(examples=["0/Normal"])
    node: int
    name: str
    start_pfn: int
    spanned_pages: int
    present_pages: int
    held_pages: int
    holds: int
    orphaned_pages: int = Field(default=0, description="held by holders whose lease expired")

    @classmethod
    def of(cls, zone: Zone, held_pages: int, holds: int, orphaned_pages: int = 0) -> ZoneOut:
        return cls(
            id=zone.id,
            node=zone.node,
            name=zone.name,
            start_pfn=zone.start_pfn,
            spanned_pages=zone.spanned_pages,
            present_pages=zone.present_pages,
            held_pages=held_pages,
            holds=holds,
            orphaned_pages=orphaned_pages,
        )


class ZoneList(BaseModel):
    items: list[ZoneOut]


class BlockOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 32,
                    "start_pfn": 1048576,
                    "nr_pages": 32768,
                    "node": 0,
                    "zone": "0/Normal",
                    "zones": ["0/Normal"],
                    "state": "online",
                    "held_pages": 4608,
                    "holds": 72,
                    "removable": True,
                    "orphaned_pages": 0,
                }
            ]
        }
    )

    id: int
    start_pfn: int
    nr_pages: int
    node: int
    zone: str = Field(description="the block's zone; the first one for a multizone block")
    zones: list[str] = Field(description="every zone the block intersects")
    state: BlockStateName
    held_pages: int
    holds: int
    removable: bool = Field(description="no hold in the block lacks a release handler")
    orphaned_pages: int = Field(default=0, description="held by holders whose lease expired")

    @classmethod
    def of(
        cls,
        block: MemoryBlock,
        state: str,
        held_pages: int,
        holds: int,
        removable: bool,
        orphaned_pages: int = 0,
    ) -> BlockOut:
        return cls(
            id=block.id,
            start_pfn=block.start_pfn,
            nr_pages=block.nr_pages,
            node=block.node,
            zone=block.zone.id,
            zones=[z.id for z in block.zones],
            state=state,  # type: ignore[arg-type]
            held_pages=held_pages,
            holds=holds,
            removable=removable,
            orphaned_pages=orphaned_pages,
        )


class BlockList(BaseModel):
    items: list[BlockOut]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class WhoAmI(BaseModel):
    role: Literal["admin", "holder"] = Field(description="what the token may do")
    holder: str | None = Field(description="the holder a holder token belongs to")


class HoldList(BaseModel):
    items: list[HoldOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


# -- batches ------------------------------------------------------------------------------


class BatchPage(Request):
    pfn: Pfn
    order: Order = 0


class BatchRange(Request):
    start_pfn: Pfn
    nr_pages: int = Field(ge=1, le=MAX_RANGE_PAGES, description="order-0 pages from start_pfn")


class BatchSetRequest(Request):
    holder: HolderName | None = Field(default=None, description="defaults to the caller")
    overwrite: bool = False
    atomic: bool = Field(default=False, description="all or nothing")
    pages: list[BatchPage] = Field(default_factory=list, examples=[[{"pfn": 1048576, "order": 9}]])
    ranges: list[BatchRange] = Field(
        default_factory=list, examples=[[{"start_pfn": 1049088, "nr_pages": 64}]]
    )


class BatchUnsetRequest(Request):
    holder: HolderName | None = Field(
        default=None, description="if given, only this holder's holds may be unset"
    )
    atomic: bool = Field(default=False, description="all or nothing")
    pages: list[BatchPage] = Field(default_factory=list)
    ranges: list[BatchRange] = Field(default_factory=list)


class BatchResultItem(BaseModel):
    pfn: int
    order: int
    status: Literal["created", "unchanged", "overwritten", "unset", "error"]
    code: str | None = Field(default=None, description="problem code of a failed entry")
    detail: str | None = None


class BatchResponse(BaseModel):
    results: list[BatchResultItem]


# -- offline ------------------------------------------------------------------------------


class OfflineRequest(Request):
    deadline_s: float = Field(
        default=DEFAULT_DEADLINE_S,
        gt=0,
        le=MAX_DEADLINE_S,
        description="the whole offline ends by then",
    )
    reclaim_orphans: bool = Field(
        default=False,
        description="erase the block's orphaned holds (of expired holders) without a call",
    )


class OfflineFailureOut(BaseModel):
    holder: str
    pfn: int
    order: int
    reason: FailureReasonName
    detail: str


class ReclaimedHoldOut(BaseModel):
    holder: str
    pfn: int
    order: int


class OfflineReportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "block": 33,
                    "state": "online",
                    "released_pages": 4096,
                    "released_holds": 8,
                    "webhook_calls": 2,
                    "duration_ms": 12.5,
                    "failures": [
                        {
                            "holder": "rdma0",
                            "pfn": 1085440,
                            "order": 0,
                            "reason": "release_failed",
                            "detail": "holder 'rdma0': HTTP 500: MR still registered by qp 7",
                        }
                    ],
                    "reclaimed": [{"holder": "dead0", "pfn": 1081344, "order": 0}],
                }
            ]
        }
    )

    block: int
    state: BlockStateName
    released_pages: int
    released_holds: int
    webhook_calls: int
    duration_ms: float
    failures: list[OfflineFailureOut]
    reclaimed: list[ReclaimedHoldOut] = Field(
        default_factory=list, description="orphaned holds erased without a call"
    )
