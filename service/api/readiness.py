"""Starting, ready, stopping: what the server tells an orchestrator while it recovers.

A durable registry rebuilds its trees from the store after the server started
accepting connections (``app.py``), so that "starting" can be told from "dead":

    /healthz            200 from the first accepted connection on (the process is up)
    /readyz             503 ``not_ready`` (with the holds loaded so far) until recovered
    /v1/..., /metrics   503 ``not_ready`` + ``Retry-After`` until recovered (this gate)

A standby (PostgreSQL store, ``leadership.py``) answers /readyz, /v1 and /metrics with
503 ``not_leader`` + ``Retry-After``, its ``leader`` member the leader's URL (or null).

``/docs``, ``/openapi.json`` and ``/ui`` need no state and answer at once. A recovery
that fails leaves the registry not ready and calls the app's ``on_fatal`` (``serve``
then stops and exits non-zero with the reason).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from pageholder.service.api import problems

if TYPE_CHECKING:
    from pageholder.service.api.leadership import Leadership

#: Seconds a client is told to wait before asking again while the registry recovers.
RETRY_AFTER_S = 1
GATED = ("/v1/", "/metrics")


@dataclass(slots=True)
class Readiness:
    """Whether the registry took its state back; shared by the lifespan and the gate."""

    ready: bool = False
    recovering: bool = False
    loaded: int = 0  # holds recovered so far
    failure: str | None = None
    #: set once recovery ended, recovered or failed (tests and embedders wait on it)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: with a PostgreSQL store: leader or standby (``leadership.py``)
    leadership: Leadership | None = None

    def serving(self) -> bool:
        lead = self.leadership
        return self.ready and (lead is None or lead.serving())

    def not_leader(self) -> tuple[str, str | None] | None:
        """Why this registry is not the one to ask, and whom to ask; None if it is."""
        lead = self.leadership
        if lead is None or lead.serving():
            return None
        return lead.refusal()

    def detail(self) -> str:
        if self.failure is not None:
            return f"recovery failed: {self.failure}"
        if self.recovering:
            return f"recovering the stored holds ({self.loaded:,} loaded so far)"
        return "the registry is starting or stopping"


class NotReadyGate:
    """Answers ``/v1`` and ``/metrics`` with 503 ``not_ready`` until the registry is
    ready; then one attribute read per request."""

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.readiness.serving()
            or scope["type"] != "http"
            or not scope["path"].startswith(GATED)
        ):
            await self.app(scope, receive, send)
            return
        elsewhere = self.readiness.not_leader()
        if elsewhere is not None:
            detail, leader = elsewhere
            refused = problems.problem(
                "not_leader",
                detail,
                headers={"Retry-After": str(RETRY_AFTER_S)},
                leader=leader,
            )
            await refused(scope, receive, send)
            return
        response = problems.problem(
            "not_ready",
            self.readiness.detail(),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
        await response(scope, receive, send)
