"""ASGI middleware: the body-size limit, the request counter, the revision header, and
the direct path of the event streams' bodies."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pageholder.service.api import problems
from pageholder.service.api.metrics import Metrics
from pageholder.service.api.routes.events import DIRECT_SEND, EVENTS_PATH, REVISION_HEADER


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, before a route reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(scope, receive, send)
                return
        seen = 0
        refused = False

        async def counted() -> Message:
            # Past the limit: answer 413 ourselves, tell the app the client went away,
            # and drop whatever the app then tries to send.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem("payload_too_large", f"request body is over {self.limit} bytes")
        await response(scope, receive, send)


class CountRequests:
    """Counts requests by method, route template and status for /metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()


_REVISION_HEADER = REVISION_HEADER.lower().encode()


class RevisionHeader:
    """``X-Pageholder-Revision`` on the answers to reads (``GET /v1/...``): the revision
    handed out when the request came in. The read reflects at least that revision, so a
    watch from it misses nothing (it may see a change the read already showed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = getattr(scope["app"].state, "service", None) if "app" in scope else None
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or service is None
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        revision = str(service.registry.events.revision).encode()

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == _REVISION_HEADER for name, _ in headers):
                    headers.append((_REVISION_HEADER, revision))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped)


class StreamBodies:
    """Outermost: hands ``GET /v1/events`` the ``send`` from outside every middleware
    of the app (``scope[DIRECT_SEND]``), for the body chunks of its stream.

    Each middleware here wraps ``send`` to see a response's start (its status, its
    headers); none has anything to do with the chunks of a body. A stream sends a chunk
    per subscriber per flush, so each wrapper would cost every subscriber on every
    flush; the stream sends its start through them all and its chunks past them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EVENTS_PATH:
            scope[DIRECT_SEND] = send
        await self.app(scope, receive, send)
