"""pageholder client: talk to a pageholder registry, and answer its release calls.

``PageHolderClient`` (blocking) and ``AsyncPageHolderClient`` (asyncio) call every
endpoint of the registry's HTTP API and return frozen dataclasses (``Holder``, ``Hold``,
``Block``, ``OfflineReport``, ...). A problem answer raises the ``PageHolderError``
subclass of its ``code`` (``PageHeld``, ``OfflineFailed``, ...; ``EXCEPTIONS_BY_CODE``
is the table), a request without an answer a ``TransportError``; both are
``ClientError``. ``Timeout`` and ``Retry`` configure a client.

``watch()`` follows every committed change as ``Event``s (Server-Sent Events that
resume by themselves after a dropped connection or a restart).
A client opened with ``holder=`` keeps that holder's lease alive (``keep_alive()``
does it for any holder); a failed keepalive is logged and handed to
``on_keepalive_failure`` as a ``KeepaliveFailure``.

``ReleaseReceiver`` is the holder's side of the release webhook: an ASGI app that
verifies the registry's signed ``page.release`` calls and hands each one, as a
``ReleaseRequest``, to the subsystem's callback, whose ``ReleaseResult`` is the answer.
``serve_receiver`` serves one alone on loopback.
"""

from __future__ import annotations

from ._client import AsyncKeepalive, AsyncPageHolderClient, Keepalive, PageHolderClient
from ._config import Retry, Timeout
from ._exceptions import (
    EXCEPTIONS_BY_CODE,
    BlockNotFound,
    BlockNotOffline,
    BlockNotOnline,
    ClientError,
    Conflict,
    ConnectError,
    CrossesZone,
    EventsCompacted,
    Forbidden,
    HolderExists,
    HolderHasHolds,
    HolderNotFound,
    InternalError,
    InvalidRequest,
    LeaseExpired,
    LeaseNotExpired,
    MethodNotAllowed,
    Misaligned,
    MultizoneBlock,
    NoLease,
    NoReleaseHandler,
    NotFound,
    NotHead,
    NotLeader,
    NotReady,
    OfflineFailed,
    OutcomeUnknown,
    PageHeld,
    PageHolderError,
    PageNotHeld,
    PageReleasing,
    PayloadTooLarge,
    PfnNotFound,
    ReleaseFailed,
    ReleaseTimeout,
    StorageUnavailable,
    TimeoutException,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    exception_for_code,
)
from ._keepalive import KeepaliveFailure
from ._models import (
    BatchResult,
    Block,
    BlockPage,
    FieldError,
    Hold,
    Holder,
    HolderCreated,
    HoldPage,
    HoldResult,
    Lease,
    OfflineFailure,
    OfflineReport,
    PageInfo,
    Reclaimed,
    ReclaimedHold,
    Released,
    Zone,
)
from ._receiver import (
    Page,
    ReleaseReceiver,
    ReleaseRequest,
    ReleaseResult,
    RunningReceiver,
    serve_receiver,
)
from ._watch import Event

__all__ = [
    "AsyncKeepalive",
    "AsyncPageHolderClient",
    "BatchResult",
    "Block",
    "BlockNotFound",
    "BlockNotOffline",
    "BlockNotOnline",
    "BlockPage",
    "ClientError",
    "Conflict",
    "ConnectError",
    "CrossesZone",
    "EXCEPTIONS_BY_CODE",
    "Event",
    "EventsCompacted",
    "FieldError",
    "Forbidden",
    "Hold",
    "HoldPage",
    "HoldResult",
    "Holder",
    "HolderCreated",
    "HolderExists",
    "HolderHasHolds",
    "HolderNotFound",
    "InternalError",
    "InvalidRequest",
    "Keepalive",
    "KeepaliveFailure",
    "Lease",
    "LeaseExpired",
    "LeaseNotExpired",
    "MethodNotAllowed",
    "Misaligned",
    "MultizoneBlock",
    "NoLease",
    "NoReleaseHandler",
    "NotFound",
    "NotHead",
    "NotLeader",
    "NotReady",
    "OfflineFailed",
    "OfflineFailure",
    "OfflineReport",
    "OutcomeUnknown",
    "Page",
    "PageHeld",
    "PageHolderClient",
    "PageHolderError",
    "PageInfo",
    "PageNotHeld",
    "PageReleasing",
    "PayloadTooLarge",
    "PfnNotFound",
    "Reclaimed",
    "ReclaimedHold",
    "ReleaseFailed",
    "ReleaseReceiver",
    "ReleaseRequest",
    "ReleaseResult",
    "ReleaseTimeout",
    "Released",
    "Retry",
    "RunningReceiver",
    "StorageUnavailable",
    "Timeout",
    "TimeoutException",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "Zone",
    "exception_for_code",
    "serve_receiver",
]
