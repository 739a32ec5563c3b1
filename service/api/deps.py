"""Dependencies of the routes, as ``Annotated`` aliases.

They are ``async def`` on purpose: none of them blocks, and FastAPI runs a plain ``def``
dependency in its thread pool, which cost a thread round trip each, on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pageholder.service.api.auth import Principal
from pageholder.service.api.problems import HTTPProblem
from pageholder.service.api.state import ServiceState
from pageholder.service.core.registry import Registry


class BearerAuth(HTTPBearer):
    """The bearer token resolved to a principal, in one dependency.

    An ``HTTPBearer`` (so OpenAPI and /docs' Authorize button know the scheme) that
    resolves the token itself: one dependency node instead of two on every request.
    """

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        credentials = await super().__call__(request)
        return principal_of(request.app.state.service, credentials)


TOKEN_HELP = "the admin token (printed at first start) or a holder's token"
bearer = BearerAuth(scheme_name="HTTPBearer", auto_error=False, description=TOKEN_HELP)
# The plain scheme, for /metrics, which may also be open without a token.
optional_bearer = HTTPBearer(scheme_name="HTTPBearer", auto_error=False, description=TOKEN_HELP)


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_registry(request: Request) -> Registry:
    # Straight from the request, not through StateDep: every dependency node costs
    # FastAPI a solve on every request, and this one is on every route.
    registry: Registry = request.app.state.service.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def principal_of(
    state: ServiceState, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPProblem("unauthorized", "missing bearer token", challenge)
    principal = state.tokens.resolve(credentials.credentials)
    if principal is None:
        raise HTTPProblem("unauthorized", "unknown bearer token", challenge)
    return principal


PrincipalDep = Annotated[Principal, Depends(bearer)]


async def require_admin(principal: PrincipalDep) -> Principal:
    return admin_only(principal)


def admin_only(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise HTTPProblem("forbidden", "this needs the admin token")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def require_self_or_admin(principal: PrincipalDep, name: str) -> Principal:
    if not principal.is_admin and principal.holder != name:
        raise HTTPProblem("forbidden", f"only the admin or holder {name!r} may do this")
    return principal
