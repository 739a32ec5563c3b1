"""Core errors. Each carries the problem ``code`` that the HTTP layer puts on the wire.

The core (radix, layout, registry, offline, store) raises only these; the API maps
``code`` to an HTTP status in one table (``api/problems.py``) and a test proves every
code is mapped. Extension members (``holder``, ``head_pfn``, ``order``, ...) travel in
``extra`` and end up beside ``code`` in the problem document.

    PageHolderError
    ├── InvalidRequest            invalid_request
    │   ├── Misaligned            misaligned
    │   └── CrossesZone           crosses_zone
    ├── NotFound
    │   ├── PfnNotFound           pfn_not_found
    │   ├── HolderNotFound        holder_not_found
    │   ├── PageNotHeld           page_not_held
    │   └── BlockNotFound         block_not_found
    ├── Conflict
    │   ├── HolderExists          holder_exists
    │   ├── HolderHasHolds        holder_has_holds
    │   ├── PageHeld              page_held
    │   ├── PageReleasing         page_releasing
    │   ├── NotHead               not_head
    │   ├── BlockNotOnline        block_not_online
    │   ├── BlockNotOffline       block_not_offline
    │   ├── MultizoneBlock        multizone_block
    │   ├── NoReleaseHandler      no_release_handler
    │   ├── OfflineFailed         offline_failed
    │   ├── LeaseExpired          lease_expired
    │   ├── LeaseNotExpired       lease_not_expired
    │   └── NoLease               no_lease
    ├── Forbidden                 forbidden
    ├── EventsCompacted           events_compacted     (+ oldest_rev)
    ├── ReleaseFailed             release_failed
    ├── ReleaseTimeout            release_timeout
    └── StorageUnavailable        storage_unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class PageHolderError(Exception):
    """Base of every core error: a stable ``code``, a human ``detail``, extension members."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra


class InvalidRequest(PageHolderError):
    code = "invalid_request"


class Misaligned(InvalidRequest):
    code = "misaligned"


class CrossesZone(InvalidRequest):
    code = "crosses_zone"


class NotFound(PageHolderError):
    code = "not_found"


class PfnNotFound(NotFound):
    code = "pfn_not_found"


class HolderNotFound(NotFound):
    code = "holder_not_found"


class PageNotHeld(NotFound):
    code = "page_not_held"


class BlockNotFound(NotFound):
    code = "block_not_found"


class Conflict(PageHolderError):
    code = "conflict"


class HolderExists(Conflict):
    code = "holder_exists"


class HolderHasHolds(Conflict):
    code = "holder_has_holds"


class PageHeld(Conflict):
    code = "page_held"


class PageReleasing(Conflict):
    code = "page_releasing"


class NotHead(Conflict):
    code = "not_head"


class BlockNotOnline(Conflict):
    code = "block_not_online"


class BlockNotOffline(Conflict):
    code = "block_not_offline"


class MultizoneBlock(Conflict):
    code = "multizone_block"


class NoReleaseHandler(Conflict):
    code = "no_release_handler"


class OfflineFailed(Conflict):
    """``extra["report"]`` is the report; ``report_json`` the same report encoded already
    (for its event), which an answer may splice in instead of encoding it again."""

    code = "offline_failed"
    report_json: str | None = None


class LeaseExpired(Conflict):
    """A hold by a holder whose lease expired (it must keep its lease alive first)."""

    code = "lease_expired"


class LeaseNotExpired(Conflict):
    """Reclaiming the holds of a holder whose lease is live (or who has none)."""

    code = "lease_not_expired"


class NoLease(Conflict):
    """A keepalive for a holder without a lease."""

    code = "no_lease"


class Forbidden(PageHolderError):
    code = "forbidden"


class EventsCompacted(PageHolderError):
    """A watch from a revision the registry no longer keeps (or never had)."""

    code = "events_compacted"


class ReleaseFailed(PageHolderError):
    code = "release_failed"


class ReleaseTimeout(PageHolderError):
    code = "release_timeout"


class StorageUnavailable(PageHolderError):
    code = "storage_unavailable"


def all_error_classes() -> list[type[PageHolderError]]:
    """Every error class, base first: the API's mapping test walks this list."""
    found: list[type[PageHolderError]] = []
    pending: list[type[PageHolderError]] = [PageHolderError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
