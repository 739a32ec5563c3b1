"""/healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pageholder.service.api.deps import StateDep, admin_only, optional_bearer, principal_of
from pageholder.service.api.problems import HTTPProblem, documented
from pageholder.service.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", name="healthz", openapi_extra={"security": []})
async def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get(
    "/readyz",
    name="readyz",
    responses=documented("not_ready", "not_leader"),
    openapi_extra={"security": []},
)
async def readyz(state: StateDep) -> Health:
    """The registry is loaded and takes requests (503 while it recovers its holds, and
    on a standby registry: `not_leader`, naming the leader)."""
    elsewhere = state.readiness.not_leader()
    if elsewhere is not None:
        detail, leader = elsewhere
        raise HTTPProblem("not_leader", detail, {"Retry-After": "1"}, leader=leader)
    if not state.ready:
        raise HTTPProblem("not_ready", state.readiness.detail())
    return Health(status="ok")


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
        **documented("unauthorized", "forbidden"),
    },
)
async def metrics(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(optional_bearer)],
) -> Response:
    """Prometheus metrics: requests, holds per zone, webhook calls by outcome and latency.
    Needs the admin token unless the server runs with `PAGEHOLDER_METRICS_OPEN=true`."""
    if not state.settings.metrics_open:
        admin_only(principal_of(state, credentials))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
