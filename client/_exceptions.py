"""Everything a client raises, and the one table from problem ``code`` to class.

    ClientError
    ├── TransportError                      no usable HTTP answer
    │   ├── ConnectError                    could not connect
    │   ├── TimeoutException                connect, read, write or pool timeout
    │   └── OutcomeUnknown                  sent, no answer, not sent again (.method, .url)
    ├── UnexpectedResponse                  an answer the API does not give (not JSON, ...)
    └── PageHolderError                     the server answered with a problem document
        ├── InternalError                   internal_error        500
        ├── InvalidRequest                  invalid_request       422  (.errors)
        │   ├── Misaligned                  misaligned            422
        │   └── CrossesZone                 crosses_zone          422
        ├── NotFound                        not_found             404
        │   ├── PfnNotFound                 pfn_not_found         404
        │   ├── HolderNotFound              holder_not_found      404
        │   ├── PageNotHeld                 page_not_held         404
        │   └── BlockNotFound               block_not_found       404
        ├── Conflict                        conflict              409
        │   ├── HolderExists                holder_exists         409
        │   ├── HolderHasHolds              holder_has_holds      409
        │   ├── PageHeld                    page_held             409  (.holder, .head_pfn)
        │   ├── PageReleasing               page_releasing        409
        │   ├── NotHead                     not_head              409  (.head_pfn)
        │   ├── BlockNotOnline              block_not_online      409
        │   ├── BlockNotOffline             block_not_offline     409
        │   ├── MultizoneBlock              multizone_block       409
        │   ├── NoReleaseHandler            no_release_handler    409
        │   ├── OfflineFailed               offline_failed        409  (.report)
        │   ├── LeaseExpired                lease_expired         409
        │   ├── LeaseNotExpired             lease_not_expired     409
        │   └── NoLease                     no_lease              409
        ├── Unauthorized                    unauthorized          401
        ├── Forbidden                       forbidden             403
        ├── EventsCompacted                 events_compacted      410  (.oldest_rev)
        ├── MethodNotAllowed                method_not_allowed    405
        ├── PayloadTooLarge                 payload_too_large     413
        ├── ReleaseFailed                   release_failed        502
        ├── ReleaseTimeout                  release_timeout       504
        ├── StorageUnavailable              storage_unavailable   503
        ├── NotReady                        not_ready             503
        └── NotLeader                       not_leader            503  (.leader)

``EXCEPTIONS_BY_CODE`` is the table; ``exception_for_code`` reads it. A code this client
does not know (a newer server) falls back to the class of its status family
(``NotFound`` for 404, ``Conflict`` for 409, ``InvalidRequest`` for 422, ...), else to
``PageHolderError``; so does an error answer without a problem document (from a proxy,
say), whose ``code`` is then None. The tests prove that every code of the server's table
has a class of its own here.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final, TypeVar

import httpx

from ._models import FieldError, OfflineReport, parse

__all__ = [
    "EXCEPTIONS_BY_CODE",
    "ClientError",
    "ConnectError",
    "OutcomeUnknown",
    "PageHolderError",
    "TimeoutException",
    "TransportError",
    "UnexpectedResponse",
    "error_from_problem",
    "exception_for_code",
    "transport_error",
]


T = TypeVar("T")


class ClientError(Exception):
    """Root of everything this client raises."""


# -- no answer ----------------------------------------------------------------------------


class TransportError(ClientError):
    """The request got no usable HTTP answer (connection refused, reset, timed out)."""


class ConnectError(TransportError):
    """Could not connect to the registry."""


class TimeoutException(TransportError):
    """A connect, read, write or pool timeout (see ``Timeout``)."""


class OutcomeUnknown(TransportError):
    """A call that is not idempotent was sent and got no answer (a read timeout, a reset
    connection): it may have been applied, so a client with several URLs reports it
    instead of sending it again. ``method``, ``url`` (where it went) and ``path``."""

    def __init__(self, method: str, url: str, path: str, cause: Exception) -> None:
        super().__init__(
            f"{method} {url}{path}: no answer after the request was sent "
            f"({type(cause).__name__}: {cause or 'no detail'}); it may have been applied, "
            "so it was not sent again"
        )
        self.method = method
        self.url = url
        self.path = path


class UnexpectedResponse(ClientError):
    """An answer the API does not give: a body that is not the promised JSON, a 3xx."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


_TRANSPORT_MAP: Final[tuple[tuple[type[Exception], type[TransportError]], ...]] = (
    (httpx.TimeoutException, TimeoutException),
    (httpx.ConnectError, ConnectError),
    (httpx.RequestError, TransportError),
)


def transport_error(exc: httpx.RequestError) -> TransportError:
    """The client's error for an httpx request error (raise it ``from exc``)."""
    for httpx_class, ours in _TRANSPORT_MAP:
        if isinstance(exc, httpx_class):
            return ours(str(exc) or type(exc).__name__)
    raise AssertionError("unreachable: httpx.RequestError is the last row")  # pragma: no cover


# -- problem documents --------------------------------------------------------------------


class PageHolderError(ClientError):
    """The server answered with an RFC 9457 problem document.

    ``status`` (HTTP), ``code`` (the problem's ``code``, None if the answer had none),
    ``detail`` (for people) and ``problem`` (the whole document, extension members
    such as ``holder``, ``head_pfn``, ``order`` or ``block`` included).
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem)
        code = self.problem.get("code")
        self.code: str | None = code if isinstance(code, str) else None
        self.title = str(self.problem.get("title") or _phrase(status))
        self.detail = str(self.problem.get("detail") or self.title)
        super().__init__(f"{status} {self.code or self.title}: {self.detail}")


class InternalError(PageHolderError):
    """The server failed to handle the request (its log says why)."""


class InvalidRequest(PageHolderError):
    """Malformed input; ``errors`` lists the rejected fields when the server named them."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        raw = self.problem.get("errors")
        self.errors: list[FieldError] = [
            error
            for item in (raw if isinstance(raw, list) else [])
            if (error := _extension(item, FieldError)) is not None
        ]


class Misaligned(InvalidRequest):
    """The pfn is not aligned to the hold's order."""


class CrossesZone(InvalidRequest):
    """The hold would span two zones."""


class NotFound(PageHolderError):
    """No such route or resource."""


class PfnNotFound(NotFound):
    """The pfn is outside every zone."""


class HolderNotFound(NotFound):
    """No holder has this name."""


class PageNotHeld(NotFound):
    """Nothing holds this page."""


class BlockNotFound(NotFound):
    """No memory block has this id."""


class Conflict(PageHolderError):
    """The request conflicts with the registry's state."""


class HolderExists(Conflict):
    """A holder with this name is registered already."""


class HolderHasHolds(Conflict):
    """The holder still holds pages; the admin may delete it with ``force=True``."""


class PageHeld(Conflict):
    """Another holder holds the page: ``holder`` and the hold's ``head_pfn``."""

    @property
    def holder(self) -> str | None:
        value = self.problem.get("holder")
        return value if isinstance(value, str) else None

    @property
    def head_pfn(self) -> int | None:
        return _int_or_none(self.problem.get("head_pfn"))


class PageReleasing(Conflict):
    """The hold is being released; it cannot be held, overwritten or unset now."""


class NotHead(Conflict):
    """The pfn is inside a larger hold; unset its ``head_pfn``."""

    @property
    def head_pfn(self) -> int | None:
        return _int_or_none(self.problem.get("head_pfn"))


class BlockNotOnline(Conflict):
    """The memory block is not online: no new holds, no offline."""


class BlockNotOffline(Conflict):
    """Only an offline block can be brought online."""


class MultizoneBlock(Conflict):
    """A block that spans two zones cannot be offlined."""


class NoReleaseHandler(Conflict):
    """The page's holder has no ``release_url``."""


class OfflineFailed(Conflict):
    """The block stays online; ``report`` says which holds were not released and why."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        super().__init__(status, problem)
        self.report: OfflineReport | None = _extension(self.problem.get("report"), OfflineReport)


class LeaseExpired(Conflict):
    """The holder's lease expired: it may start no hold until a keepalive revives it."""


class LeaseNotExpired(Conflict):
    """Only an expired holder's holds can be reclaimed; this one is live (or has no lease)."""


class NoLease(Conflict):
    """A keepalive for a holder that has no lease."""


class Unauthorized(PageHolderError):
    """No bearer token, or one the server does not know."""


class Forbidden(PageHolderError):
    """The token is known but may not do this (not the admin, not this holder)."""


class EventsCompacted(PageHolderError):
    """A watch from a revision the registry no longer keeps: list the state again and
    watch from the revision that listing reflects; ``oldest_rev`` is the oldest kept."""

    @property
    def oldest_rev(self) -> int | None:
        return _int_or_none(self.problem.get("oldest_rev"))


class MethodNotAllowed(PageHolderError):
    """The route does not take this HTTP method."""


class PayloadTooLarge(PageHolderError):
    """The body is over the server's limit, or a batch has too many entries."""


class ReleaseFailed(PageHolderError):
    """The holder's release handler refused or failed."""


class ReleaseTimeout(PageHolderError):
    """The holder's release handler did not answer in time."""


class StorageUnavailable(PageHolderError):
    """The server cannot write its journal."""


class NotReady(PageHolderError):
    """The registry is starting or stopping."""


class NotLeader(PageHolderError):
    """A standby answered: the call was not applied. ``leader`` is the URL the leader
    advertises (None while none is known). A client with several URLs follows it only
    if it is one of them; this is raised once no URL answered as the leader in time."""

    @property
    def leader(self) -> str | None:
        value = self.problem.get("leader")
        return value if isinstance(value, str) else None


EXCEPTIONS_BY_CODE: Final[Mapping[str, type[PageHolderError]]] = MappingProxyType(
    {
        "internal_error": InternalError,
        "invalid_request": InvalidRequest,
        "misaligned": Misaligned,
        "crosses_zone": CrossesZone,
        "not_found": NotFound,
        "pfn_not_found": PfnNotFound,
        "holder_not_found": HolderNotFound,
        "page_not_held": PageNotHeld,
        "block_not_found": BlockNotFound,
        "conflict": Conflict,
        "holder_exists": HolderExists,
        "holder_has_holds": HolderHasHolds,
        "page_held": PageHeld,
        "page_releasing": PageReleasing,
        "not_head": NotHead,
        "block_not_online": BlockNotOnline,
        "block_not_offline": BlockNotOffline,
        "multizone_block": MultizoneBlock,
        "no_release_handler": NoReleaseHandler,
        "offline_failed": OfflineFailed,
        "lease_expired": LeaseExpired,
        "lease_not_expired": LeaseNotExpired,
        "no_lease": NoLease,
        "unauthorized": Unauthorized,
        "forbidden": Forbidden,
        "events_compacted": EventsCompacted,
        "method_not_allowed": MethodNotAllowed,
        "payload_too_large": PayloadTooLarge,
        "release_failed": ReleaseFailed,
        "release_timeout": ReleaseTimeout,
        "storage_unavailable": StorageUnavailable,
        "not_ready": NotReady,
        "not_leader": NotLeader,
    }
)

# The class of an unknown code (or of an answer without a problem document), by status.
_BY_STATUS: Final[Mapping[int, type[PageHolderError]]] = MappingProxyType(
    {
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        405: MethodNotAllowed,
        409: Conflict,
        413: PayloadTooLarge,
        422: InvalidRequest,
        500: InternalError,
    }
)


def exception_for_code(code: str | None, status: int | None = None) -> type[PageHolderError]:
    """The class raised for a problem ``code``; an unknown one falls back by ``status``."""
    if code is not None and code in EXCEPTIONS_BY_CODE:
        return EXCEPTIONS_BY_CODE[code]
    if status is not None:
        return _BY_STATUS.get(status, PageHolderError)
    return PageHolderError


def error_from_problem(status: int, problem: Mapping[str, Any]) -> PageHolderError:
    """The exception for an error answer with this status and problem document."""
    code = problem.get("code")
    return exception_for_code(code if isinstance(code, str) else None, status)(status, problem)


def _extension(value: object, cls: type[T]) -> T | None:
    """An extension member parsed as ``cls``; None if absent or malformed (the error is
    still raised as its class, with the raw member in ``problem``)."""
    if value is None:
        return None
    try:
        return parse(cls, value)
    except ValueError:
        return None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
