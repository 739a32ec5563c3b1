"""``PageHolderClient`` (httpx.Client) and ``AsyncPageHolderClient`` (httpx.AsyncClient).

Both take ``(url, token=None, *, timeout=Timeout(), retry=Retry(), transport=None,
http_client=None, holder=None, on_keepalive_failure=None, failover_timeout_s=15.0)``.
``url`` is one registry, or several (a sequence, or one string with commas: a leader
and its standbys): then a call that meets a standby (503 ``not_leader``) or no
registry goes to the next one, as ``_failover.py`` tells, and stays with the leader
it found; a call that is not idempotent and lost its answer raises ``OutcomeUnknown``.

``transport`` is handed to the httpx client the pageholder client makes
(``httpx.MockTransport``, ``httpx.ASGITransport`` for an in-process app, ...);
``http_client`` is an httpx client of your own to send through instead (a shared pool,
proxies, event hooks): the pageholder client then sends absolute URLs under ``url``
with its own headers and timeouts, and leaves closing it to you. Every method is one
``Call`` built by ``BaseClient``; the two classes differ only in how they send it.

Leases: a client opened (``with`` / ``async with``) with ``holder="nic0"`` keeps that
holder's lease alive until it is closed: a keepalive every third of the TTL, in a
thread (sync) or a task (async), retried soon after a failure (a registry restart),
each failure reported to ``on_keepalive_failure`` and logged (``_keepalive.py``).
``keep_alive(name)`` starts the same for any holder (the admin's client may keep
several alive) and returns a handle with ``stop()``.

    with PageHolderClient("http://127.0.0.1:8000", token) as registry:
        registry.hold(1048576, "nic0", order=9)
        for hold in registry.iter_holds(holder="nic0"):
            ...
        for event in registry.watch(types=["hold"]):    # every change from now on
            ...

``watch()`` reconnects by itself (a dropped connection, an overflow, a registry that
restarts) and resumes after the last revision it handed out: no gaps, no duplicates.
It gives up, raising the last error, after ``reconnect_for_s`` without a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Self, TypeVar

import httpx

from ._base import UNSET, BaseClient, Call, PageSpec, RangeSpec, Unset, Urls, _problem
from ._config import DEFAULT_RETRY, DEFAULT_TIMEOUT, Retry, Timeout
from ._exceptions import ClientError, NotReady, TransportError, transport_error
from ._failover import FAILOVER_TIMEOUT_S, not_leader
from ._keepalive import KeepaliveSchedule, OnKeepaliveFailure
from ._models import (
    BatchResult,
    Block,
    BlockPage,
    Hold,
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
)
from ._watch import RECONNECT_FOR_S, Event, Overflowed, Watch

__all__ = ["AsyncKeepalive", "AsyncPageHolderClient", "Keepalive", "PageHolderClient"]

T = TypeVar("T")


class PageHolderClient(BaseClient):
    """A blocking client of one registry; ``token`` is the admin's or a holder's."""

    def __init__(
        self,
        url: Urls,
        token: str | None = None,
        *,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        holder: str | None = None,
        on_keepalive_failure: OnKeepaliveFailure | None = None,
        failover_timeout_s: float = FAILOVER_TIMEOUT_S,
    ) -> None:
        super().__init__(
            url, token, timeout=timeout, retry=retry, failover_timeout_s=failover_timeout_s
        )
        if http_client is not None and transport is not None:
            raise ValueError("give transport or http_client, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, follow_redirects=False)
        self.holder = holder
        self._on_keepalive_failure = on_keepalive_failure
        self._keepalives: list[Keepalive] = []

    def close(self) -> None:
        """Stop the keepalives, close the connections (not those of an ``http_client``
        you passed)."""
        for keepalive in self._keepalives:
            keepalive.stop()
        self._keepalives.clear()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        if self.holder is not None:
            self.keep_alive(self.holder, on_failure=self._on_keepalive_failure)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        route = self._route(call)
        delay: float | None
        while True:  # bounded: Retry.attempts, or the failover deadline
            try:
                response = self._http.send(self._request(self._http, call, route.url))
            except httpx.RequestError as exc:
                delay = route.failed(exc)  # raises when there is no next attempt
            else:
                delay = self._retry_after_answer(route, response)
                if delay is None:
                    return self._result(call, response)
                response.close()
            time.sleep(delay)

    # -- leases ---------------------------------------------------------------------------

    def keepalive(self, name: str) -> Lease:
        """Renew a holder's lease once (admin or the holder); revives an expired one."""
        return self._send(self._keepalive(name))

    def reclaim(self, name: str) -> Reclaimed:
        """Erase every hold of a holder whose lease expired (admin)."""
        return self._send(self._reclaim(name))

    def keep_alive(self, name: str, *, on_failure: OnKeepaliveFailure | None = None) -> Keepalive:
        """Keep ``name``'s lease alive in a thread until ``stop()`` or ``close()``."""
        keepalive = Keepalive(self, KeepaliveSchedule(name, on_failure))
        self._keepalives.append(keepalive)
        return keepalive

    # -- holders --------------------------------------------------------------------------

    def create_holder(
        self,
        name: str,
        release_url: str | None = None,
        *,
        timeout_s: float | None = None,
        description: str | None = None,
        lease_ttl_s: float | None = None,
        on_expiry: str | None = None,
    ) -> HolderCreated:
        """Register a holder (admin); its ``token`` and ``webhook_secret`` come only here.
        With ``lease_ttl_s`` it must send keepalives (``on_expiry``: keep or reclaim)."""
        return self._send(
            self._create_holder(name, release_url, timeout_s, description, lease_ttl_s, on_expiry)
        )

    def list_holders(self) -> list[Holder]:
        return self._send(self._list_holders())

    def get_holder(self, name: str) -> Holder:
        return self._send(self._get_holder(name))

    def update_holder(
        self,
        name: str,
        *,
        release_url: str | None | Unset = UNSET,
        timeout_s: float | None = None,
        description: str | None = None,
        lease_ttl_s: float | None | Unset = UNSET,
        on_expiry: str | None = None,
    ) -> Holder:
        """Change only the given fields; ``release_url=None`` removes the release handler,
        ``lease_ttl_s=None`` the lease (setting one starts it live)."""
        return self._send(
            self._update_holder(name, release_url, timeout_s, description, lease_ttl_s, on_expiry)
        )

    def delete_holder(self, name: str, *, force: bool = False) -> None:
        """Remove a holder; ``force`` (admin) drops its holds too."""
        self._send(self._delete_holder(name, force))

    # -- pages ----------------------------------------------------------------------------

    def owner(self, pfn: int) -> PageInfo:
        """Who holds ``pfn`` (the RFC's ``page_owner``)."""
        return self._send(self._get_page(pfn))

    def hold(
        self, pfn: int, holder: str | None = None, *, order: int = 0, overwrite: bool = False
    ) -> HoldResult:
        """Hold ``2**order`` pages from ``pfn`` for ``holder`` (default: the token's)."""
        return self._send(self._hold(pfn, holder, order, overwrite))

    def unset(self, pfn: int) -> None:
        """Drop the hold whose head is ``pfn``."""
        self._send(self._unset(pfn))

    def release(self, pfn: int) -> Released:
        """Ask the holder of ``pfn`` to give its hold back (admin)."""
        return self._send(self._release(pfn))

    def list_holds(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        holder: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        state: str | None = None,
    ) -> HoldPage:
        """One page of the holds intersecting ``[start, end)``, ascending; ``state``
        (held, releasing, orphaned) filters."""
        return self._send(self._list_holds(start, end, holder, limit, cursor, state))

    def iter_holds(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        holder: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Hold]:
        """Every hold intersecting ``[start, end)``, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self.list_holds(start, end, holder=holder, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def batch_set(
        self,
        holder: str | None = None,
        *,
        pages: Iterable[PageSpec] = (),
        ranges: Iterable[RangeSpec] = (),
        overwrite: bool = False,
        atomic: bool = False,
    ) -> list[BatchResult]:
        """Hold ``pages`` (pfn or ``(pfn, order)``) and ``ranges`` (``(start, nr_pages)``)."""
        return self._send(self._batch_set(holder, pages, ranges, overwrite, atomic))

    def batch_unset(
        self,
        holder: str | None = None,
        *,
        pages: Iterable[PageSpec] = (),
        ranges: Iterable[RangeSpec] = (),
        atomic: bool = False,
    ) -> list[BatchResult]:
        """Unset many holds by head pfn; ``holder`` limits it to that holder's holds."""
        return self._send(self._batch_unset(holder, pages, ranges, atomic))

    # -- zones and blocks -----------------------------------------------------------------

    def list_zones(self) -> list[Zone]:
        return self._send(self._list_zones())

    def list_blocks(
        self,
        *,
        state: str | None = None,
        zone: str | None = None,
        held: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> BlockPage:
        """One page of memory blocks, ascending, filtered by state, zone id and holds."""
        return self._send(self._list_blocks(state, zone, held, limit, cursor))

    def iter_blocks(
        self,
        *,
        state: str | None = None,
        zone: str | None = None,
        held: bool | None = None,
        page_size: int | None = None,
    ) -> Iterator[Block]:
        """Every memory block that passes the filters, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self.list_blocks(
                state=state, zone=zone, held=held, limit=page_size, cursor=cursor
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_block(self, block_id: int) -> Block:
        return self._send(self._get_block(block_id))

    def offline(
        self, block_id: int, deadline_s: float = 30.0, *, reclaim_orphans: bool = False
    ) -> OfflineReport:
        """Take a block offline (admin); ``OfflineFailed`` (with ``.report``) if it stays.
        ``reclaim_orphans`` erases holds of expired holders without asking them."""
        return self._send(self._offline_block(block_id, deadline_s, reclaim_orphans))

    def online(self, block_id: int) -> Block:
        """Bring an offline block back online (admin)."""
        return self._send(self._online_block(block_id))

    # -- health ---------------------------------------------------------------------------

    def healthz(self) -> bool:
        """True when the process answers (an error is raised otherwise)."""
        return self._send(self._healthz())

    def readyz(self) -> bool:
        """True when the registry takes requests, False while it starts or stops."""
        try:
            return self._send(self._readyz())
        except NotReady:
            return False

    def metrics(self) -> str:
        """The Prometheus metrics text (admin, unless the server opens it)."""
        return self._send(self._metrics())

    # -- the names of earlier versions ------------------------------------------------------

    get_page = owner
    offline_block = offline
    online_block = online
    # -- events ---------------------------------------------------------------------------

    def watch(
        self,
        since: int | None = None,
        *,
        types: Iterable[str] | None = None,
        reconnect_for_s: float = RECONNECT_FOR_S,
    ) -> Iterator[Event]:
        """Every change after revision ``since`` (None: from now), then live, forever.

        ``types``: categories to keep (``hold``, ``holder``, ``block``). Raises
        ``EventsCompacted`` when ``since`` is older than the registry keeps.
        """
        watch = Watch(since, types)
        down_since: float | None = None
        attempt = 0
        url = self.url
        while True:  # bounded: reconnect_for_s without a connection
            try:
                request = self._watch_request(self._http, watch, url)
                response = self._http.send(request, stream=True)
                try:
                    if not self._watch_opened(_read(response), url):
                        raise _Refused(response)
                    watch.connected()
                    down_since, attempt = None, 0
                    for line in response.iter_lines():
                        yield from watch.feed(line)
                finally:
                    response.close()
                error: Exception = _Ended()
            except (httpx.RequestError, httpx.StreamError, Overflowed, _Refused) as exc:
                error = exc
            url = self._watch_next_url(url, *_failover_of(error))
            attempt += 1
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > reconnect_for_s:
                raise _gave_up(error)
            time.sleep(self.retry.backoff(attempt) if attempt > 1 else 0.0)


class AsyncPageHolderClient(BaseClient):
    """The asyncio twin of ``PageHolderClient``: same methods, awaited."""

    def __init__(
        self,
        url: Urls,
        token: str | None = None,
        *,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        retry: Retry = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        holder: str | None = None,
        on_keepalive_failure: OnKeepaliveFailure | None = None,
        failover_timeout_s: float = FAILOVER_TIMEOUT_S,
    ) -> None:
        super().__init__(
            url, token, timeout=timeout, retry=retry, failover_timeout_s=failover_timeout_s
        )
        if http_client is not None and transport is not None:
            raise ValueError("give transport or http_client, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, follow_redirects=False)
        self.holder = holder
        self._on_keepalive_failure = on_keepalive_failure
        self._keepalives: list[AsyncKeepalive] = []

    async def aclose(self) -> None:
        """Stop the keepalives, close the connections (not those of an ``http_client``
        you passed)."""
        for keepalive in self._keepalives:
            await keepalive.stop()
        self._keepalives.clear()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        if self.holder is not None:
            self.keep_alive(self.holder, on_failure=self._on_keepalive_failure)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        route = self._route(call)
        delay: float | None
        while True:  # bounded: Retry.attempts, or the failover deadline
            try:
                response = await self._http.send(self._request(self._http, call, route.url))
            except httpx.RequestError as exc:
                delay = route.failed(exc)  # raises when there is no next attempt
            else:
                delay = self._retry_after_answer(route, response)
                if delay is None:
                    return self._result(call, response)
                await response.aclose()
            await asyncio.sleep(delay)

    # -- leases ---------------------------------------------------------------------------

    async def keepalive(self, name: str) -> Lease:
        """Renew a holder's lease once (admin or the holder); revives an expired one."""
        return await self._send(self._keepalive(name))

    async def reclaim(self, name: str) -> Reclaimed:
        """Erase every hold of a holder whose lease expired (admin)."""
        return await self._send(self._reclaim(name))

    def keep_alive(
        self, name: str, *, on_failure: OnKeepaliveFailure | None = None
    ) -> AsyncKeepalive:
        """Keep ``name``'s lease alive in a task until ``stop()`` or ``aclose()``."""
        keepalive = AsyncKeepalive(self, KeepaliveSchedule(name, on_failure))
        self._keepalives.append(keepalive)
        return keepalive

    # -- holders --------------------------------------------------------------------------

    async def create_holder(
        self,
        name: str,
        release_url: str | None = None,
        *,
        timeout_s: float | None = None,
        description: str | None = None,
        lease_ttl_s: float | None = None,
        on_expiry: str | None = None,
    ) -> HolderCreated:
        """Register a holder (admin); its ``token`` and ``webhook_secret`` come only here.
        With ``lease_ttl_s`` it must send keepalives (``on_expiry``: keep or reclaim)."""
        return await self._send(
            self._create_holder(name, release_url, timeout_s, description, lease_ttl_s, on_expiry)
        )

    async def list_holders(self) -> list[Holder]:
        return await self._send(self._list_holders())

    async def get_holder(self, name: str) -> Holder:
        return await self._send(self._get_holder(name))

    async def update_holder(
        self,
        name: str,
        *,
        release_url: str | None | Unset = UNSET,
        timeout_s: float | None = None,
        description: str | None = None,
        lease_ttl_s: float | None | Unset = UNSET,
        on_expiry: str | None = None,
    ) -> Holder:
        """Change only the given fields; ``release_url=None`` removes the release handler,
        ``lease_ttl_s=None`` the lease (setting one starts it live)."""
        return await self._send(
            self._update_holder(name, release_url, timeout_s, description, lease_ttl_s, on_expiry)
        )

    async def delete_holder(self, name: str, *, force: bool = False) -> None:
        """Remove a holder; ``force`` (admin) drops its holds too."""
        await self._send(self._delete_holder(name, force))

    # -- pages ----------------------------------------------------------------------------

    async def owner(self, pfn: int) -> PageInfo:
        """Who holds ``pfn`` (the RFC's ``page_owner``)."""
        return await self._send(self._get_page(pfn))

    async def hold(
        self, pfn: int, holder: str | None = None, *, order: int = 0, overwrite: bool = False
    ) -> HoldResult:
        """Hold ``2**order`` pages from ``pfn`` for ``holder`` (default: the token's)."""
        return await self._send(self._hold(pfn, holder, order, overwrite))

    async def unset(self, pfn: int) -> None:
        """Drop the hold whose head is ``pfn``."""
        await self._send(self._unset(pfn))

    async def release(self, pfn: int) -> Released:
        """Ask the holder of ``pfn`` to give its hold back (admin)."""
        return await self._send(self._release(pfn))

    async def list_holds(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        holder: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        state: str | None = None,
    ) -> HoldPage:
        """One page of the holds intersecting ``[start, end)``, ascending; ``state``
        (held, releasing, orphaned) filters."""
        return await self._send(self._list_holds(start, end, holder, limit, cursor, state))

    async def iter_holds(
        self,
        start: int = 0,
        end: int | None = None,
        *,
        holder: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Hold]:
        """Every hold intersecting ``[start, end)``, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = await self.list_holds(start, end, holder=holder, limit=page_size, cursor=cursor)
            for hold in page.items:
                yield hold
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def batch_set(
        self,
        holder: str | None = None,
        *,
        pages: Iterable[PageSpec] = (),
        ranges: Iterable[RangeSpec] = (),
        overwrite: bool = False,
        atomic: bool = False,
    ) -> list[BatchResult]:
        """Hold ``pages`` (pfn or ``(pfn, order)``) and ``ranges`` (``(start, nr_pages)``)."""
        return await self._send(self._batch_set(holder, pages, ranges, overwrite, atomic))

    async def batch_unset(
        self,
        holder: str | None = None,
        *,
        pages: Iterable[PageSpec] = (),
        ranges: Iterable[RangeSpec] = (),
        atomic: bool = False,
    ) -> list[BatchResult]:
        """Unset many holds by head pfn; ``holder`` limits it to that holder's holds."""
        return await self._send(self._batch_unset(holder, pages, ranges, atomic))

    # -- zones and blocks -----------------------------------------------------------------

    async def list_zones(self) -> list[Zone]:
        return await self._send(self._list_zones())

    async def list_blocks(
        self,
        *,
        state: str | None = None,
        zone: str | None = None,
        held: bool | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> BlockPage:
        """One page of memory blocks, ascending, filtered by state, zone id and holds."""
        return await self._send(self._list_blocks(state, zone, held, limit, cursor))

    async def iter_blocks(
        self,
        *,
        state: str | None = None,
        zone: str | None = None,
        held: bool | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Block]:
        """Every memory block that passes the filters, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = await self.list_blocks(
                state=state, zone=zone, held=held, limit=page_size, cursor=cursor
            )
            for block in page.items:
                yield block
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_block(self, block_id: int) -> Block:
        return await self._send(self._get_block(block_id))

    async def offline(
        self, block_id: int, deadline_s: float = 30.0, *, reclaim_orphans: bool = False
    ) -> OfflineReport:
        """Take a block offline (admin); ``OfflineFailed`` (with ``.report``) if it stays.
        ``reclaim_orphans`` erases holds of expired holders without asking them."""
        return await self._send(self._offline_block(block_id, deadline_s, reclaim_orphans))

    async def online(self, block_id: int) -> Block:
        """Bring an offline block back online (admin)."""
        return await self._send(self._online_block(block_id))

    # -- health ---------------------------------------------------------------------------

    async def healthz(self) -> bool:
        """True when the process answers (an error is raised otherwise)."""
        return await self._send(self._healthz())

    async def readyz(self) -> bool:
        """True when the registry takes requests, False while it starts or stops."""
        try:
            return await self._send(self._readyz())
        except NotReady:
            return False

    async def metrics(self) -> str:
        """The Prometheus metrics text (admin, unless the server opens it)."""
        return await self._send(self._metrics())

    # -- the names of earlier versions ------------------------------------------------------

    get_page = owner
    offline_block = offline
    online_block = online
    # -- events ---------------------------------------------------------------------------

    async def watch(
        self,
        since: int | None = None,
        *,
        types: Iterable[str] | None = None,
        reconnect_for_s: float = RECONNECT_FOR_S,
    ) -> AsyncIterator[Event]:
        """Every change after revision ``since`` (None: from now), then live, forever.

        ``types``: categories to keep (``hold``, ``holder``, ``block``). Raises
        ``EventsCompacted`` when ``since`` is older than the registry keeps.
        """
        watch = Watch(since, types)
        down_since: float | None = None
        attempt = 0
        url = self.url
        while True:  # bounded: reconnect_for_s without a connection
            try:
                request = self._watch_request(self._http, watch, url)
                response = await self._http.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        await response.aread()
                    if not self._watch_opened(response, url):
                        raise _Refused(response)
                    watch.connected()
                    down_since, attempt = None, 0
                    async for line in response.aiter_lines():
                        for event in watch.feed(line):
                            yield event
                finally:
                    await response.aclose()
                error: Exception = _Ended()
            except (httpx.RequestError, httpx.StreamError, Overflowed, _Refused) as exc:
                error = exc
            url = self._watch_next_url(url, *_failover_of(error))
            attempt += 1
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > reconnect_for_s:
                raise _gave_up(error)
            await asyncio.sleep(self.retry.backoff(attempt) if attempt > 1 else 0.0)


class _Refused(Exception):
    """A temporary refusal of the event stream (502/503/504; its body has been read)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"GET /v1/events: HTTP {response.status_code}")
        self.status = response.status_code
        self.not_leader, self.leader = not_leader(self.status, _problem(response))


def _failover_of(error: Exception) -> tuple[Exception | None, str | None]:
    """A watch's failure that may move it to another URL (no answer, or a standby's
    ``not_leader``) and the leader it names; ``(None, None)`` for the others."""
    if isinstance(error, httpx.RequestError):
        return error, None
    if isinstance(error, _Refused) and error.not_leader:
        return error, error.leader
    return None, None


class _Ended(Exception):
    """The server ended the stream (it is stopping)."""

    def __init__(self) -> None:
        super().__init__("the registry ended the event stream")


def _read(response: httpx.Response) -> httpx.Response:
    """An error answer's body, read (a stream's is left alone)."""
    if response.status_code != 200:
        response.read()
    return response


def _gave_up(error: Exception) -> Exception:
    """What a watch raises when it cannot get a stream back in time."""
    if isinstance(error, httpx.RequestError):
        return transport_error(error)
    return TransportError(f"no event stream: {error}")


class Keepalive:
    """A thread that runs a ``KeepaliveSchedule`` with a ``PageHolderClient``."""

    def __init__(self, client: PageHolderClient, schedule: KeepaliveSchedule) -> None:
        self.schedule = schedule
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"keepalive:{schedule.holder}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                lease = self._client.keepalive(self.schedule.holder)
            except ClientError as exc:
                delay = self.schedule.failed(exc)
            else:
                delay = self.schedule.succeeded(lease)

    def stop(self) -> None:
        """Stop sending keepalives (the lease then runs out after its TTL)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class AsyncKeepalive:
    """A task that runs a ``KeepaliveSchedule`` with an ``AsyncPageHolderClient``."""

    def __init__(self, client: AsyncPageHolderClient, schedule: KeepaliveSchedule) -> None:
        self.schedule = schedule
        self._client = client
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"keepalive:{schedule.holder}"
        )

    async def _run(self) -> None:
        while True:
            try:
                lease = await self._client.keepalive(self.schedule.holder)
            except ClientError as exc:
                delay = self.schedule.failed(exc)
            else:
                delay = self.schedule.succeeded(lease)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop sending keepalives (the lease then runs out after its TTL)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
