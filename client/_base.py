"""What the sync and async clients share: every endpoint as a ``Call``, and its answer.

A ``Call`` is one API request (method, path, query, JSON body) with the function that
turns a successful answer into the result. ``BaseClient`` builds them (one method per
endpoint, named like the client's), decides whether a failed attempt is retried, and
turns answers into results or exceptions; ``PageHolderClient`` and
``AsyncPageHolderClient`` only send them, so the two differ only in ``await``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._config import Retry, Timeout
from ._exceptions import UnexpectedResponse, error_from_problem
from ._failover import Endpoints, Route, next_url, split_urls
from ._models import (
    BatchResult,
    Block,
    BlockPage,
    Holder,
    HolderCreated,
    HoldPage,
    HoldResult,
    Lease,
    OfflineReport,
    PageInfo,
    Reclaimed,
    Released,
    Zone,
    parse,
)
from ._watch import EVENT_STREAM, Watch

__all__ = ["UNSET", "BaseClient", "Call", "PageSpec", "RangeSpec", "Unset"]

T = TypeVar("T")

#: Methods whose calls are retried: repeating them has the effect of doing them once.
IDEMPOTENT: Final = frozenset({"GET", "PUT", "DELETE"})
#: What a URL argument may be: one URL, several separated by commas, or a sequence.
Urls = str | Sequence[str]
#: Slack on top of an offline's deadline before the client stops waiting for its answer.
OFFLINE_SLACK_S: Final = 5.0
USER_AGENT: Final = "pageholder-client/0.1"

#: A page of a batch: a pfn (order 0) or ``(pfn, order)``.
PageSpec = int | tuple[int, int]
#: A range of a batch: ``(start_pfn, nr_pages)`` order-0 pages.
RangeSpec = tuple[int, int]


class Unset(enum.Enum):
    """The type of ``UNSET``: "leave this field as it is" where None means "clear it"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int | float | bool] | None = None
    json: Any = None
    read_timeout: float | None = None
    retry: bool = True
    #: Doing it twice is doing it once; None: as its method says (``IDEMPOTENT``).
    idempotent: bool | None = None

    @property
    def retryable(self) -> bool:
        """Retried on the same URL (``Retry``): an idempotent method, unless told not to."""
        return self.retry and self.method in IDEMPOTENT

    @property
    def replayable(self) -> bool:
        """Sent to another URL after a lost answer: doing it twice is doing it once."""
        return self.method in IDEMPOTENT if self.idempotent is None else self.idempotent


def _json(cls: type[T]) -> Callable[[httpx.Response], T]:
    def read(response: httpx.Response) -> T:
        return parse(cls, response.json())

    return read


def _items(cls: type[T]) -> Callable[[httpx.Response], list[T]]:
    def read(response: httpx.Response) -> list[T]:
        return [parse(cls, item) for item in response.json()["items"]]

    return read


def _nothing(response: httpx.Response) -> None:
    return None


def _text(response: httpx.Response) -> str:
    return response.text


def _ok(response: httpx.Response) -> bool:
    return bool(response.json()["status"] == "ok")


def _results(response: httpx.Response) -> list[BatchResult]:
    return [parse(BatchResult, item) for item in response.json()["results"]]


def _query(**values: str | int | float | bool | None) -> dict[str, str | int | float | bool]:
    """The given query parameters; None ones are left out (the server's default)."""
    return {name: value for name, value in values.items() if value is not None}


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _batch(
    pages: Iterable[PageSpec], ranges: Iterable[RangeSpec]
) -> dict[str, list[dict[str, int]]]:
    return {
        "pages": [
            {"pfn": p, "order": 0} if isinstance(p, int) else {"pfn": p[0], "order": p[1]}
            for p in pages
        ],
        "ranges": [{"start_pfn": start, "nr_pages": n} for start, n in ranges],
    }


class BaseClient:
    """Request building and answer reading, shared by both clients."""

    def __init__(
        self,
        url: Urls,
        token: str | None,
        *,
        timeout: Timeout | float,
        retry: Retry,
        failover_timeout_s: float,
    ) -> None:
        self.urls = split_urls(url)
        self._endpoints = Endpoints(self.urls)
        self.timeout = Timeout.of(timeout)
        self.retry = retry
        self.failover_timeout_s = failover_timeout_s
        self.headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    @property
    def url(self) -> str:
        """The URL calls go to now: the first one given, then the last leader found."""
        return self._endpoints.current

    def __repr__(self) -> str:
        shown = self.url if len(self.urls) == 1 else list(self.urls)
        return f"{type(self).__name__}({shown!r})"

    # -- sending: what the subclasses call around their send ----------------------------

    def _route(self, call: Call[Any]) -> Route:
        """Where ``call``'s attempts go (``route.url``), and whether there is another."""
        return Route(self._endpoints, call, self.retry, self.failover_timeout_s)

    def _request(
        self, http: httpx.Client | httpx.AsyncClient, call: Call[Any], url: str
    ) -> httpx.Request:
        timeout = self.timeout
        if call.read_timeout is not None:
            timeout = timeout.at_least(call.read_timeout)
        return http.build_request(
            call.method,
            url + call.path,
            params=call.params,
            json=call.json,
            headers=self.headers,
            timeout=timeout.to_httpx(),
        )

    def _retry_after_answer(self, route: Route, response: httpx.Response) -> float | None:
        """Seconds to wait before the next attempt after this answer, or None: it is
        final (its body has been read)."""
        problem = _problem(response) if response.status_code == 503 else None
        return route.answered(response, problem)

    def _result(self, call: Call[T], response: httpx.Response) -> T:
        """The result of a final answer, or the exception its problem document names."""
        status = response.status_code
        if status >= 400:
            raise error_from_problem(status, _problem(response))
        if not 200 <= status < 300:
            raise UnexpectedResponse(
                f"{call.method} {call.path}: unexpected HTTP {status}", status=status
            )
        try:
            return call.parse(response)
        except (ValueError, KeyError, TypeError) as exc:
            raise UnexpectedResponse(
                f"{call.method} {call.path}: HTTP {status} with an unexpected body: {exc}",
                status=status,
            ) from exc

    # -- watching: what both twins' watch() share ---------------------------------------

    def _watch_request(
        self, http: httpx.Client | httpx.AsyncClient, watch: Watch, url: str
    ) -> httpx.Request:
        """The request that (re)opens ``watch``'s stream at ``url``, after its last
        revision."""
        params, headers = watch.request()
        return http.build_request(
            "GET",
            url + "/v1/events",
            params=params,
            headers={**self.headers, **headers},
            timeout=self.timeout.to_httpx(),
        )

    def _watch_opened(self, response: httpx.Response, url: str) -> bool:
        """True: the stream is open. False: a temporary refusal (502/503/504: a registry
        starting or stopping, a standby), connect again. A final refusal's error is
        raised (the body must have been read): ``EventsCompacted``, ``Unauthorized``..."""
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if status == 200 and content_type.startswith(EVENT_STREAM):
            self._endpoints.current = url
            return True
        if status in self.retry.statuses:
            return False
        if status >= 400:
            raise error_from_problem(status, _problem(response))
        raise UnexpectedResponse(
            f"GET /v1/events: HTTP {status} ({content_type or 'no content type'})", status=status
        )

    def _watch_next_url(self, url: str, failure: Exception | None, leader: str | None) -> str:
        """Where a watch reconnects after a failure at ``url``: with several URLs, the
        next one after no answer (a GET may go anywhere again) or after ``not_leader``
        (to its ``leader`` if configured); otherwise ``url`` again."""
        if not self._endpoints.several or failure is None:
            return url
        return next_url(self._endpoints, url, leader)

    # -- holders --------------------------------------------------------------------------

    def _create_holder(
        self,
        name: str,
        release_url: str | None,
        timeout_s: float | None,
        description: str | None,
        lease_ttl_s: float | None = None,
        on_expiry: str | None = None,
    ) -> Call[HolderCreated]:
        body: dict[str, Any] = {"name": name, "release_url": release_url}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if description is not None:
            body["description"] = description
        if lease_ttl_s is not None:
            body["lease_ttl_s"] = lease_ttl_s
        if on_expiry is not None:
            body["on_expiry"] = on_expiry
        return Call("POST", "/v1/holders", _json(HolderCreated), json=body)

    def _list_holders(self) -> Call[list[Holder]]:
        return Call("GET", "/v1/holders", _items(Holder))

    def _get_holder(self, name: str) -> Call[Holder]:
        return Call("GET", f"/v1/holders/{_segment(name)}", _json(Holder))

    def _update_holder(
        self,
        name: str,
        release_url: str | None | Unset,
        timeout_s: float | None,
        description: str | None,
        lease_ttl_s: float | None | Unset = UNSET,
        on_expiry: str | None = None,
    ) -> Call[Holder]:
        body: dict[str, Any] = {}
        if release_url is not UNSET:
            body["release_url"] = release_url
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if description is not None:
            body["description"] = description
        if lease_ttl_s is not UNSET:
            body["lease_ttl_s"] = lease_ttl_s
        if on_expiry is not None:
            body["on_expiry"] = on_expiry
        # The fields are set to values, not changed by amounts: twice is once.
        return Call(
            "PATCH", f"/v1/holders/{_segment(name)}", _json(Holder), json=body, idempotent=True
        )

    def _keepalive(self, name: str) -> Call[Lease]:
        # Not retried here: the keepalive loop (_keepalive.py) has its own schedule. But
        # idempotent (a second renewal from now is the first one): after a lost answer it
        # may go to another URL.
        return Call(
            "POST",
            f"/v1/holders/{_segment(name)}/keepalive",
            _json(Lease),
            retry=False,
            idempotent=True,
        )

    def _reclaim(self, name: str) -> Call[Reclaimed]:
        return Call("POST", f"/v1/holders/{_segment(name)}/reclaim", _json(Reclaimed))

    def _delete_holder(self, name: str, force: bool) -> Call[None]:
        params = {"force": "true"} if force else None
        return Call("DELETE", f"/v1/holders/{_segment(name)}", _nothing, params=params)

    # -- pages ----------------------------------------------------------------------------

    def _get_page(self, pfn: int) -> Call[PageInfo]:
        return Call("GET", f"/v1/pages/{_segment(pfn)}", _json(PageInfo))

    def _hold(self, pfn: int, holder: str | None, order: int, overwrite: bool) -> Call[HoldResult]:
        body: dict[str, Any] = {"order": order, "overwrite": overwrite}
        if holder is not None:
            body["holder"] = holder
        return Call("PUT", f"/v1/pages/{_segment(pfn)}/hold", _json(HoldResult), json=body)

    def _unset(self, pfn: int) -> Call[None]:
        return Call("DELETE", f"/v1/pages/{_segment(pfn)}/hold", _nothing)

    def _release(self, pfn: int) -> Call[Released]:
        return Call("POST", f"/v1/pages/{_segment(pfn)}/release", _json(Released))

    def _list_holds(
        self,
        start: int,
        end: int | None,
        holder: str | None,
        limit: int | None,
        cursor: str | None,
        state: str | None = None,
    ) -> Call[HoldPage]:
        params = _query(
            start=start, end=end, holder=holder, state=state, limit=limit, cursor=cursor
        )
        return Call("GET", "/v1/pages", _json(HoldPage), params=params)

    # -- batches --------------------------------------------------------------------------

    def _batch_set(
        self,
        holder: str | None,
        pages: Iterable[PageSpec],
        ranges: Iterable[RangeSpec],
        overwrite: bool,
        atomic: bool,
    ) -> Call[list[BatchResult]]:
        body: dict[str, Any] = {"overwrite": overwrite, "atomic": atomic, **_batch(pages, ranges)}
        if holder is not None:
            body["holder"] = holder
        # A set of PUT holds: holding again what is held by the same holder is unchanged.
        return Call("POST", "/v1/holds/batch-set", _results, json=body, idempotent=True)

    def _batch_unset(
        self,
        holder: str | None,
        pages: Iterable[PageSpec],
        ranges: Iterable[RangeSpec],
        atomic: bool,
    ) -> Call[list[BatchResult]]:
        body: dict[str, Any] = {"atomic": atomic, **_batch(pages, ranges)}
        if holder is not None:
            body["holder"] = holder
        # Like DELETE, unless atomic: a replay of an applied atomic batch would fail whole
        # (its pages are no longer held) where the call itself succeeded.
        return Call("POST", "/v1/holds/batch-unset", _results, json=body, idempotent=not atomic)

    # -- zones and blocks -----------------------------------------------------------------

    def _list_zones(self) -> Call[list[Zone]]:
        return Call("GET", "/v1/zones", _items(Zone))

    def _list_blocks(
        self,
        state: str | None,
        zone: str | None,
        held: bool | None,
        limit: int | None,
        cursor: str | None,
    ) -> Call[BlockPage]:
        held_text = None if held is None else ("true" if held else "false")
        params = _query(state=state, zone=zone, held=held_text, limit=limit, cursor=cursor)
        return Call("GET", "/v1/blocks", _json(BlockPage), params=params)

    def _get_block(self, block_id: int) -> Call[Block]:
        return Call("GET", f"/v1/blocks/{_segment(block_id)}", _json(Block))

    def _offline_block(
        self, block_id: int, deadline_s: float, reclaim_orphans: bool = False
    ) -> Call[OfflineReport]:
        body: dict[str, Any] = {"deadline_s": deadline_s}
        if reclaim_orphans:
            body["reclaim_orphans"] = True
        return Call(
            "POST",
            f"/v1/blocks/{_segment(block_id)}/offline",
            _json(OfflineReport),
            json=body,
            read_timeout=deadline_s + OFFLINE_SLACK_S,
        )

    def _online_block(self, block_id: int) -> Call[Block]:
        return Call("POST", f"/v1/blocks/{_segment(block_id)}/online", _json(Block))

    # -- health ---------------------------------------------------------------------------

    def _healthz(self) -> Call[bool]:
        return Call("GET", "/healthz", _ok)

    def _readyz(self) -> Call[bool]:
        # A probe wants the answer of now: no retry.
        return Call("GET", "/readyz", _ok, retry=False)

    def _metrics(self) -> Call[str]:
        return Call("GET", "/metrics", _text)


def _problem(response: httpx.Response) -> dict[str, Any]:
    """The answer's problem document, or one made up from its status and text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return body
    text = response.text.strip()[:200]
    return {
        "status": response.status_code,
        "title": response.reason_phrase,
        "detail": f"HTTP {response.status_code} without a problem document"
        + (f": {text}" if text else ""),
    }
