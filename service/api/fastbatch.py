"""Batch routes answered ahead of FastAPI, their bodies validated in slices.

``POST /v1/holds/batch-set`` and ``batch-unset`` take up to 65,536 entries. Through
FastAPI, their body is one pydantic validation (a model object per entry, ~50-100 ms
in one step: every other request waits). ``FastBatches``, an ASGI middleware next to
``fast.FastPages`` (inside the body limit, auth-before-body, the batch entry limit and
the request metrics), answers a batch itself when it can prove FastAPI would take it
the same way, as ``FastPages`` does for the page routes:

* the body is ``application/json``, ``slicedjson.loads`` reads it (``json.loads`` in
  slices) and ``batchbody.read_batch`` (in slices too) finds it a certainly valid
  batch; the bearer token resolves to a principal;
* then the route's own implementation (``routes.batches.hold_many`` /
  ``unset_many_of``) runs with it, and core errors go through the app's handlers.

Everything else (no or unknown token, invalid or unusual JSON, another content type)
is passed on untouched, the body replayed, to FastAPI: its 422 ``invalid_request``
documents stay pydantic's own, byte for byte. The FastAPI routes stay the OpenAPI
document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pageholder.service.api import slicedjson
from pageholder.service.api.auth import Principal
from pageholder.service.api.batchbody import BatchBody, read_batch
from pageholder.service.api.fast import (
    JSON,
    Fallback,
    _content_type,
    _principal,
    _read_body,
    _replay,
    answer,
)
from pageholder.service.api.routes.batches import hold_many, unset_many_of
from pageholder.service.core.collector import full_collections_deferred
from pageholder.service.core.registry import Registry

Implementation = Callable[[BatchBody, Registry, Principal], Awaitable[Response]]

#: The routes taken over, by their FastAPI names: what implements each, and whether
#: its body is an unset's.
BATCH_ROUTES: Final[dict[str, tuple[Implementation, bool]]] = {
    "batch_set": (hold_many, False),
    "batch_unset": (unset_many_of, True),
}


class FastBatches:
    """ASGI middleware answering valid batch requests itself (see the module docstring)."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any]) -> None:
        self.app = app
        self.by_path: dict[str, tuple[APIRoute, Implementation, bool]] = {}
        self.answered = 0  # requests answered here (tests prove the fast path ran)
        for route in routes:
            if isinstance(route, APIRoute) and route.name in BATCH_ROUTES:
                implementation, unset = BATCH_ROUTES[route.name]
                self.by_path[route.path] = (route, implementation, unset)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            taken = self.by_path.get(scope["path"])
        if taken is None:
            await self.app(scope, receive, send)
            return
        route, implementation, unset = taken
        body: bytes | None = None
        # While the request's entries, results and ops live, full collections would
        # walk them again and again (core.collector); after it they are gone.
        with full_collections_deferred():
            try:
                body = await _read_body(receive)
                principal, batch = await _arguments(body, scope, unset)
            except Fallback:  # the body replayed even when empty: it was read
                await self.app(scope, receive if body is None else _replay(body, receive), send)
                return
            self.answered += 1
            registry: Registry = scope["app"].state.service.registry

            async def call() -> Response:
                return await implementation(batch, registry, principal)

            await answer(route, call, scope, receive, send)


async def _arguments(body: bytes, scope: Scope, unset: bool) -> tuple[Principal, BatchBody]:
    """The principal and the batch, or Fallback where FastAPI might answer otherwise."""
    app: FastAPI = scope["app"]
    if app.dependency_overrides or _content_type(scope) != JSON:
        raise Fallback
    principal = _principal(app.state.service, scope)
    doc = await slicedjson.loads(body)  # json.loads (Starlette's Request.json()), sliced
    if doc is None:
        raise Fallback
    batch = await read_batch(doc, unset=unset)
    if batch is None:
        raise Fallback
    return principal, batch
