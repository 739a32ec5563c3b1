"""Dependencies of the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..registry import Registry
from .auth import Principal
from .problems import HTTPProblem
from .state import ServiceState

bearer = HTTPBearer(
    auto_error=False,
    description="the admin token (printed at first start) or a holder's token",
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_registry(state: StateDep) -> Registry:
    return state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPProblem("unauthorized", "missing bearer token", challenge)
    principal = state.tokens.resolve(credentials.credentials)
    if principal is None:
        raise HTTPProblem("unauthorized", "unknown bearer token", challenge)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise HTTPProblem("forbidden", "this needs the admin token")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def require_self_or_admin(principal: PrincipalDep, name: str) -> Principal:
    if not principal.is_admin and principal.holder != name:
        raise HTTPProblem("forbidden", f"only the admin or holder {name!r} may do this")
    return principal
