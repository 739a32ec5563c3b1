"""Authentication before the body: a request that carries a body to ``/v1`` without a
valid bearer token is answered 401 before a byte of its body is read or parsed.

FastAPI resolves a route's body parameter before its dependencies run, so without this
an anonymous client could make the server read and parse 8 MiB of JSON per request.
The token is resolved again by the route's own dependency (a dictionary lookup); this
only refuses early, it grants nothing.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from pageholder.service.api import problems

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class AuthFirst:
    """Refuses unauthenticated ``/v1`` requests with a body before reading it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in WITH_BODY
            and scope["path"].startswith("/v1/")
        ):
            detail = self._refusal(scope)
            if detail is not None:
                response = problems.problem(
                    "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(scope: Scope) -> str | None:
        token = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    token = credentials.strip()
                break
        if token is None:
            return "missing bearer token"
        service = getattr(scope["app"].state, "service", None)
        if service is not None and service.tokens.resolve(token) is None:
            return "unknown bearer token"
        return None
