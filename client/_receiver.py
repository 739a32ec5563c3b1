"""The holder's side of the release webhook: ``ReleaseReceiver``, a pure ASGI app.

A subsystem that holds pages gives the registry a ``release_url``; when the registry
needs pages back it POSTs a signed ``page.release`` call there (Standard Webhooks,
signed with the holder's own ``whsec_`` secret)::

    {"type": "page.release", "holder": "nic0", "reason": "offline", "block": 17,
     "deadline": "2026-11-26T15:00:00.000Z", "pages": [{"pfn": 557056, "order": 0}]}

The receiver checks the call, turns it into a ``ReleaseRequest`` and hands it to the
subsystem's ``on_release`` callback, whose ``ReleaseResult`` becomes the answer. What a
request gets, in the order the checks are made::

    not POST                                       405 {"error"}
    body over 16 MiB                               413 {"error"}
    missing/bad signature, timestamp out of        401 {"error"}
      tolerance
    webhook-id already answered finally            400 {"error": "replayed webhook-id"}
    webhook-id being processed right now           409 {"error"} + Retry-After
    payload not a page.release call                400 {"error"}
    on_release raised                              500 {"error": "<ExcType>: <msg>"}
    on_release returned None / ReleaseResult.all() 204, no body
    ReleaseResult.partial(released, failed)        200 {"released": [..],
                                                        "failed": [{"pfn", "error"}]}
    ReleaseResult.later(retry_after_s, status)     503 (409/423/429) + Retry-After
    ReleaseResult.refuse(error, status)            that status, {"error"}

Replays: the registry keeps one ``webhook-id`` for every attempt of one delivery and
retries it only after a temporary answer (409/423/429/503). So the ids remembered are
those of deliveries that got a *final* answer; a later request with such an id is a
replay (someone re-sent a captured request) and is refused with 400, deliberately not
409: 409 is one of the registry's "temporary, retry" statuses, and a replay must end the
delivery, not prolong it. An id that got a temporary answer is forgotten, so the
registry's retry is processed as new. A second request with the id of a delivery that is
still in ``on_release`` gets 409 + ``Retry-After`` (temporary): it is neither processed
twice nor remembered.

Leases: given ``registry=`` (a client that may send the holder's keepalives: the
holder's own token, or the admin's) and ``holder=``, the receiver keeps that holder's
lease alive while it is served (``serve_receiver``, or the ASGI lifespan when it is
served alone), so a subsystem that answers release calls also proves it is alive.

Mounting: the receiver answers on every path it is given, so it can be served alone or
mounted (``app.mount("/release", receiver)``). Starlette's ``Mount`` matches
``/release/`` (with the slash) and redirects ``/release`` to it, and the registry does
not follow redirects: register ``http://host:port/release/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ._keepalive import OnKeepaliveFailure

if TYPE_CHECKING:
    import uvicorn

    # types only: _client imports _watch, which imports this module
    from ._client import AsyncKeepalive, AsyncPageHolderClient

__all__ = [
    "MAX_BODY_BYTES",
    "TEMPORARY_STATUSES",
    "Page",
    "ReleaseReceiver",
    "ReleaseRequest",
    "ReleaseResult",
    "RunningReceiver",
    "serve_receiver",
]

logger = logging.getLogger(__name__)

#: Statuses the registry reads as "not now, retry" (honouring ``Retry-After``).
TEMPORARY_STATUSES: Final = frozenset({409, 423, 429, 503})
#: A request body larger than this is refused with 413.
MAX_BODY_BYTES: Final = 16 << 20
#: How many recent release requests ``ReleaseReceiver.calls`` keeps.
CALLS_KEPT: Final = 1000

# ASGI type aliases, the same as Starlette's: the receiver depends on no framework.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --- what the callback sees and returns ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One held page range: ``2**order`` pages starting at ``pfn``."""

    pfn: int
    order: int


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """One verified release call: give ``pages`` back before ``deadline`` (UTC).

    ``reason`` is ``"release"`` (someone asked for these pages) or ``"offline"`` (memory
    block ``block`` is being taken offline). ``webhook_id`` is the delivery's id, the
    same for every retry of it.
    """

    holder: str
    reason: str
    block: int | None
    deadline: datetime
    pages: tuple[Page, ...]
    webhook_id: str


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What ``on_release`` answers; build it with the classmethods, not directly.

    ``kind`` says which one built it; ``temporary`` is true for ``later()`` only.
    """

    kind: Literal["all", "partial", "later", "refuse"]
    status: int
    released: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()
    retry_after_s: float | None = None
    error: str | None = None

    @classmethod
    def all(cls) -> ReleaseResult:
        """Every page was released: 204, no body. Same as returning None."""
        return cls("all", 204)

    @classmethod
    def partial(cls, released: Iterable[int], failed: Mapping[int, str]) -> ReleaseResult:
        """Some pages were released, some not: 200 with ``{"released", "failed"}``.

        A page in neither list counts as failed for the registry.
        """
        done = tuple(released)
        bad = tuple((pfn, str(error)) for pfn, error in failed.items())
        for pfn in (*done, *(p for p, _ in bad)):
            if not isinstance(pfn, int) or isinstance(pfn, bool) or pfn < 0:
                raise ValueError(f"not a pfn: {pfn!r}")
        both = set(done).intersection(p for p, _ in bad)
        if both:
            raise ValueError(f"pfns both released and failed: {sorted(both)}")
        return cls("partial", 200, released=done, failed=bad)

    @classmethod
    def later(
        cls, retry_after_s: float = 1.0, status: int = 503, *, error: str = "busy, retry later"
    ) -> ReleaseResult:
        """Not now: ``status`` (503, 409, 423 or 429) with ``Retry-After`` in whole
        seconds, rounded up. The registry retries with the same ``webhook-id``, which
        the receiver does not remember, so the retry is processed."""
        if status not in TEMPORARY_STATUSES:
            raise ValueError(f"a temporary status is one of {sorted(TEMPORARY_STATUSES)}")
        if not math.isfinite(retry_after_s) or retry_after_s < 0:
            raise ValueError("retry_after_s must be a finite number >= 0")
        return cls("later", status, retry_after_s=retry_after_s, error=error)

    @classmethod
    def refuse(cls, error: str, status: int = 500) -> ReleaseResult:
        """No page was released, final: ``status`` (4xx or 5xx) with ``{"error"}``.

        The temporary statuses are refused here: say ``later()`` for those.
        """
        if not 400 <= status <= 599 or status in TEMPORARY_STATUSES:
            raise ValueError(
                f"refuse() takes a 4xx/5xx status other than {sorted(TEMPORARY_STATUSES)}"
            )
        return cls("refuse", status, error=error)

    @property
    def temporary(self) -> bool:
        return self.status in TEMPORARY_STATUSES

    def _render(self) -> _Answer:
        if self.kind == "all":
            return _Answer(204)
        if self.kind == "partial":
            doc: dict[str, Any] = {
                "released": list(self.released),
                "failed": [{"pfn": pfn, "error": error} for pfn, error in self.failed],
            }
            return _Answer(self.status, doc)
        headers: tuple[tuple[str, str], ...] = ()
        if self.retry_after_s is not None:
            headers = (("retry-after", str(math.ceil(self.retry_after_s))),)
        return _Answer(self.status, {"error": self.error}, headers)


OnRelease = Callable[[ReleaseRequest], Awaitable[ReleaseResult | None] | ReleaseResult | None]


# --- the ASGI app ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    doc: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def final(self) -> bool:
        return self.status not in TEMPORARY_STATUSES


class _Refused(Exception):
    """Stops handling a request with ``answer``."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _error(status: int, text: str, *headers: tuple[str, str]) -> _Refused:
    return _Refused(_Answer(status, {"error": text}, headers))


class ReleaseReceiver:
    """Receives the registry's signed release calls and hands them to ``on_release``.

    ``on_release`` may be sync or async; a sync one runs in the event loop, so it must
    not block for long. ``tolerance_s`` bounds how far ``webhook-timestamp`` may be
    from ``clock()`` (epoch seconds); the standardwebhooks check of 5 minutes against
    the real clock applies as well. ``replay_window`` ids of finally answered
    deliveries are remembered. ``calls`` holds the last 1000 verified requests
    handed to ``on_release``, oldest first.
    """

    def __init__(
        self,
        secret: str,
        on_release: OnRelease,
        *,
        tolerance_s: float = 300,
        replay_window: int = 10000,
        clock: Callable[[], float] = time.time,
        registry: AsyncPageHolderClient | None = None,
        holder: str | None = None,
        on_keepalive_failure: OnKeepaliveFailure | None = None,
    ) -> None:
        if replay_window < 0:
            raise ValueError("replay_window must be >= 0")
        if (registry is None) != (holder is None):
            raise ValueError("registry and holder go together (to keep the holder's lease)")
        self._registry = registry
        self._holder = holder
        self._on_keepalive_failure = on_keepalive_failure
        self._keepalive: AsyncKeepalive | None = None
        self._webhook = Webhook(secret)  # raises on an empty or undecodable secret
        self._on_release = on_release
        self._tolerance_s = tolerance_s
        self._replay_window = replay_window
        self._clock = clock
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[str] = set()
        self.calls: list[ReleaseRequest] = []

    def start_keepalive(self) -> None:
        """Start keeping the holder's lease alive (no-op without ``registry``, or twice)."""
        if self._registry is None or self._keepalive is not None:
            return
        assert self._holder is not None
        self._keepalive = self._registry.keep_alive(
            self._holder, on_failure=self._on_keepalive_failure
        )

    async def stop_keepalive(self) -> None:
        if self._keepalive is not None:
            await self._keepalive.stop()
            self._keepalive = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            self.start_keepalive()
            try:
                await _lifespan(receive, send)
            finally:
                await self.stop_keepalive()
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        try:
            answer = await self._handle(scope, receive)
        except _Refused as refused:
            answer = refused.answer
        except _Disconnected:
            return
        await _send_answer(send, answer)

    async def _handle(self, scope: Scope, receive: Receive) -> _Answer:
        if scope["method"] != "POST":
            raise _error(405, "only POST is allowed", ("allow", "POST"))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(headers, receive)
        msg_id = self._verify(body, headers)

        # No await between this check and the bookkeeping: the id is claimed atomically.
        if msg_id in self._answered:
            raise _error(400, "replayed webhook-id")
        if msg_id in self._in_flight:
            raise _error(409, "this delivery is being processed", ("retry-after", "1"))
        self._in_flight.add(msg_id)
        try:
            answer = await self._process(body, msg_id)
            if answer.final:
                self._remember(msg_id)
            return answer
        finally:
            self._in_flight.discard(msg_id)

    def _verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """Check ``webhook-*`` headers and signature; returns the webhook-id."""
        msg_id = headers.get("webhook-id")
        stamp = headers.get("webhook-timestamp")
        if not msg_id or not stamp or not headers.get("webhook-signature"):
            raise _error(401, "missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            skew = float(stamp) - self._clock()
        except ValueError:
            raise _error(401, "webhook-timestamp is not a number") from None
        if not abs(skew) <= self._tolerance_s:  # also catches NaN
            raise _error(401, f"webhook-timestamp is {abs(skew):.0f} s off, out of tolerance")
        try:
            # A body that is not UTF-8 or a signature header that is not "v1,<base64>"
            # raise ValueError from inside verify(): a signature failure like any other.
            self._webhook.verify(body, dict(headers), json_parse=False)
        except (WebhookVerificationError, ValueError) as exc:
            raise _error(401, f"bad signature: {exc}") from None
        return msg_id

    async def _process(self, body: bytes, msg_id: str) -> _Answer:
        try:
            request = _parse_request(body, msg_id)
        except _Refused as refused:
            return refused.answer
        self.calls.append(request)
        del self.calls[:-CALLS_KEPT]
        try:
            result = self._on_release(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            logger.exception("on_release failed for %s", msg_id)
            return _Answer(500, {"error": f"{type(exc).__name__}: {exc}"})
        if result is None:
            return ReleaseResult.all()._render()
        if not isinstance(result, ReleaseResult):
            text = f"TypeError: on_release returned {type(result).__name__}, not ReleaseResult"
            return _Answer(500, {"error": text})
        return result._render()

    def _remember(self, msg_id: str) -> None:
        self._answered[msg_id] = None
        while len(self._answered) > self._replay_window:
            self._answered.popitem(last=False)


class _Disconnected(Exception):
    pass


async def _read_body(headers: Mapping[str, str], receive: Receive) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        part = message.get("body", b"")
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_answer(send: Send, answer: _Answer) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    body = b""
    if answer.doc is not None:
        body = json.dumps(answer.doc).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served alone, the receiver has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- the payload -----------------------------------------------------------------------


def _parse_request(body: bytes, msg_id: str) -> ReleaseRequest:
    """The verified body as a ``ReleaseRequest``; raises ``_Refused`` (400) saying what is
    wrong. Unknown members are ignored, for calls from a newer registry."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise _error(400, "body is not JSON") from None
    if not isinstance(doc, dict):
        raise _error(400, "body is not a JSON object")
    if doc.get("type") != "page.release":
        raise _error(400, f"unsupported type: {doc.get('type')!r}")
    holder, reason, block = doc.get("holder"), doc.get("reason"), doc.get("block")
    if not isinstance(holder, str) or not isinstance(reason, str):
        raise _error(400, "'holder' and 'reason' must be strings")
    if block is not None and not _is_count(block):
        raise _error(400, "'block' must be an integer >= 0 or null")
    deadline = _parse_deadline(doc.get("deadline"))
    raw_pages = doc.get("pages")
    if not isinstance(raw_pages, list):
        raise _error(400, "'pages' must be a list of {pfn, order} objects")
    pages = []
    for item in raw_pages:
        if not isinstance(item, dict) or not (
            _is_count(item.get("pfn")) and _is_count(item.get("order"))
        ):
            raise _error(400, "'pages' must be a list of {pfn, order} objects")
        pages.append(Page(item["pfn"], item["order"]))
    return ReleaseRequest(holder, reason, block, deadline, tuple(pages), msg_id)


def _parse_deadline(value: object) -> datetime:
    if not isinstance(value, str):
        raise _error(400, "'deadline' must be an ISO 8601 string")
    try:
        deadline = datetime.fromisoformat(value)
    except ValueError:
        raise _error(400, f"'deadline' is not ISO 8601: {value[:40]!r}") from None
    if deadline.tzinfo is None:
        raise _error(400, "'deadline' has no time zone")
    return deadline.astimezone(UTC)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- serving it alone ------------------------------------------------------------------


def _embedded_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves signals to the program it runs in.

    uvicorn is imported here, when a receiver is served: a program that only calls the
    registry (the ``pageholder`` client commands) starts without it.
    """
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return EmbeddedServer(config)


class RunningReceiver:
    """A receiver served by ``serve_receiver``; ``close()`` (or ``async with``) stops it."""

    def __init__(
        self,
        receiver: ReleaseReceiver,
        host: str,
        port: int,
        server: uvicorn.Server,
        task: asyncio.Task[None],
    ) -> None:
        self.receiver = receiver
        self.host = host
        self.port = port
        netloc = f"[{host}]" if ":" in host else host
        self.url = f"http://{netloc}:{port}/"
        self._server = server
        self._task = task

    async def close(self) -> None:
        """Stop accepting, let requests in progress finish, and wait. Idempotent."""
        self._server.should_exit = True
        await self._task
        await self.receiver.stop_keepalive()

    async def __aenter__(self) -> RunningReceiver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve_receiver(
    receiver: ReleaseReceiver, host: str = "127.0.0.1", port: int = 0
) -> RunningReceiver:
    """Serve ``receiver`` with uvicorn in the running event loop; returns once it
    accepts connections. ``port=0`` picks a free port (see ``.port``, ``.url``).

    The socket is bound here, not by uvicorn, so a bind error raises ``OSError`` (uvicorn
    would call ``sys.exit``). Raises ``RuntimeError`` if the server stops while starting.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    import uvicorn

    config = uvicorn.Config(
        receiver,
        log_level="warning",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=5,
    )
    server = _embedded_server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"receiver:{bound_port}")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it, if anything did
                raise RuntimeError("the receiver's server stopped while starting")
            await asyncio.sleep(0.005)
    except BaseException:
        # Cancelled or failed while starting: leave no server task or socket behind.
        server.should_exit = True
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        sock.close()
        raise
    receiver.start_keepalive()
    return RunningReceiver(receiver, host, bound_port, server, task)
