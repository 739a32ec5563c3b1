"""The hot page routes, answered ahead of FastAPI's per-request machinery.

``GET /v1/pages/{pfn}``, ``PUT`` and ``DELETE /v1/pages/{pfn}/hold`` and
``POST /v1/pages/{pfn}/release`` are most of a registry's traffic. FastAPI spends more on
each of them (solving the dependency tree, validating through its generic request
handler) than the tree and the store do. ``FastPages`` is an ASGI middleware, the
innermost one (so the body limit and the request metrics still apply), that answers
these requests itself -- but only those it can prove FastAPI would answer the same way:

* the route is one of FastAPI's own ``APIRoute`` objects, matched by its own path regex;
  the path parameter and the body are validated by the route's own fields (the same
  pydantic validators FastAPI runs, so every limit and pattern is the core's, once);
* the bearer token resolves to a principal (and, on admin-only routes, to the admin);
* the body is empty, or ``application/json`` holding a JSON object the route's body
  model accepts.

Then it calls the route's own endpoint function with the values FastAPI would pass, and
sends what it returns. Core errors raised by the endpoint go through the app's own
exception handlers. Everything else (no or unknown token, a bad pfn, malformed or
unknown body, another content type, another method) is passed on untouched -- the body
replayed -- to the FastAPI app, which answers it exactly as it always did: problem
documents of bad input stay FastAPI's own, byte for byte, without a second copy of any
rule or message. The FastAPI routes also remain the OpenAPI document.

A route whose signature holds anything this module does not resolve (a query
parameter, a ``Request``, an unknown dependency) is simply not taken over
(``FastPages.taken`` lists those that are), and neither is any request while
``app.dependency_overrides`` is set (tests).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pageholder.service.api import deps
from pageholder.service.api.auth import Principal

#: The routes taken over, by their FastAPI names.
HOT_ROUTES = ("get_page", "set_hold", "unset_hold", "release_page")
JSON = b"application/json"


class Fallback(Exception):
    """This request is FastAPI's to answer (raised before anything happened)."""


@dataclass(frozen=True, slots=True)
class _Param:
    """How to fill one argument of an endpoint: ``kind`` is path, body, registry,
    principal or admin."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class FastRoute:
    route: APIRoute
    params: tuple[_Param, ...]
    endpoint: Callable[..., Awaitable[Any]]
    has_body: bool


def _plan(route: APIRoute) -> FastRoute | None:
    """How to call ``route``'s endpoint without FastAPI, or None if this module cannot
    resolve every one of its parameters."""
    d = route.dependant
    unsupported = (
        d.query_params,
        d.header_params,
        d.cookie_params,
        d.request_param_name,
        d.websocket_param_name,
        d.http_connection_param_name,
        d.response_param_name,
        d.background_tasks_param_name,
        d.security_scopes_param_name,
    )
    if any(unsupported) or len(d.path_params) != 1 or len(d.body_params) > 1:
        return None
    if not inspect.iscoroutinefunction(route.endpoint) or route.dependencies:
        return None
    if route.response_field is not None and not isinstance(
        route.response_class, DefaultPlaceholder
    ):
        return None
    params = [_Param(d.path_params[0].name, "path")]
    params += [_Param(f.name, "body") for f in d.body_params]
    kinds = (
        (deps.get_registry, "registry"),
        (deps.bearer, "principal"),
        (deps.require_admin, "admin"),
    )
    for sub in d.dependencies:
        kind = next((k for call, k in kinds if call is sub.call), None)
        if kind is None or sub.name is None:
            return None
        params.append(_Param(sub.name, kind))
    return FastRoute(route, tuple(params), route.endpoint, bool(d.body_params))


def _principal(state: Any, scope: Scope) -> Principal:
    """What the bearer scheme resolves (``deps.BearerAuth``), or Fallback where it
    would refuse: the first Authorization header, ``Bearer <token>``."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, token = get_authorization_scheme_param(value.decode("latin-1"))
            if scheme.lower() != "bearer" or not token:
                raise Fallback
            principal: Principal | None = state.tokens.resolve(token)
            if principal is None:
                raise Fallback
            return principal
    raise Fallback


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Fallback  # the client went away: let the app see it
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastPages:
    """ASGI middleware answering well-formed requests of ``HOT_ROUTES`` itself."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any]) -> None:
        self.app = app
        self.by_method: dict[str, list[FastRoute]] = {}
        self.taken: list[str] = []
        self.answered = 0  # requests answered here (tests prove the fast path ran)
        for route in routes:
            if not isinstance(route, APIRoute) or route.name not in HOT_ROUTES:
                continue
            plan = _plan(route)
            if plan is None:
                continue
            self.taken.append(route.name)
            for method in route.methods or ():
                self.by_method.setdefault(method, []).append(plan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for fast in self.by_method.get(scope["method"], ()):
                match = fast.route.path_regex.match(scope["path"])
                if match is not None:
                    await self._answer(fast, match.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, fast: FastRoute, path: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = b""
        try:
            if fast.has_body:
                body = await _read_body(receive)
            kwargs = self._arguments(fast, path, body, scope)
        except Fallback:
            await self.app(scope, _replay(body, receive) if body else receive, send)
            return
        self.answered += 1
        scope["path_params"] = path

        async def call() -> Response:
            result = await fast.endpoint(**kwargs)
            return result if isinstance(result, Response) else _serialize(fast, result)

        await answer(fast.route, call, scope, receive, send)

    def _arguments(
        self, fast: FastRoute, path: dict[str, str], body: bytes, scope: Scope
    ) -> dict[str, Any]:
        app: FastAPI = scope["app"]
        if app.dependency_overrides:
            raise Fallback
        state = app.state.service
        route = fast.route
        kwargs: dict[str, Any] = {}
        principal: Principal | None = None
        for param in fast.params:
            kind = param.kind
            if kind == "path":
                field = route.dependant.path_params[0]
                value, errors = field.validate(path[field.name], {}, loc=("path", field.name))
                if errors:
                    raise Fallback
                kwargs[param.name] = value
            elif kind == "body":
                kwargs[param.name] = _body(route, body, scope)
            elif kind == "registry":
                kwargs[param.name] = state.registry
            else:
                if principal is None:
                    principal = _principal(state, scope)
                if kind == "admin" and not principal.is_admin:
                    raise Fallback
                kwargs[param.name] = principal
        return kwargs


async def answer(
    route: APIRoute,
    call: Callable[[], Awaitable[Response]],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Send what ``call`` answers for ``route``, as the FastAPI route would: core errors
    through the app's own exception handlers."""
    scope["route"] = route  # what the request metrics label it by
    app: FastAPI = scope["app"]
    try:
        response = await call()
    except Exception as exc:
        handler = _handler(app, exc)
        if handler is None:
            raise  # ServerErrorMiddleware's: a 500 problem, as from a FastAPI route
        answered = handler(Request(scope, receive), exc)
        response = await answered if inspect.isawaitable(answered) else answered
    await response(scope, receive, send)


def _body(route: APIRoute, body: bytes, scope: Scope) -> Any:
    """The body argument as FastAPI would pass it: None for an empty body, else the
    route's body model from an ``application/json`` object."""
    if not body:
        return None
    if _content_type(scope) != JSON:
        raise Fallback
    try:
        doc = json.loads(body)  # what Starlette's Request.json() does
    except ValueError:
        raise Fallback from None
    if not isinstance(doc, dict):
        raise Fallback
    field = route.body_field
    assert field is not None
    value, errors = field.validate(doc, {}, loc=("body",))
    if errors:
        raise Fallback
    return value


def _serialize(fast: FastRoute, result: Any) -> Response:
    """A returned model, serialized as FastAPI's default response class does."""
    field = fast.route.response_field
    assert field is not None
    value, errors = field.validate(result, {}, loc=("response",))
    if errors:
        raise RuntimeError(f"{fast.route.name} returned an invalid response: {errors}")
    return Response(
        field.serialize_json(value),
        status_code=fast.route.status_code or 200,
        media_type="application/json",
    )


def _handler(app: FastAPI, exc: Exception) -> Callable[..., Any] | None:
    """The app's handler for ``exc``, as Starlette's ExceptionMiddleware looks it up
    (the catch-all ``Exception`` handler is ServerErrorMiddleware's, not its)."""
    handlers = app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            handler: Callable[..., Any] = handlers[cls]
            return handler
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives the already-read body once, then the client's messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
