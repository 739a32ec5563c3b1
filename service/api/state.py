"""What one running service owns: its settings, registry, tokens, HTTP client, metrics."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from pageholder.service.api.auth import AdminToken, TokenBook
from pageholder.service.api.metrics import Metrics
from pageholder.service.api.readiness import Readiness
from pageholder.service.core.registry import Registry
from pageholder.service.settings import Settings
from pageholder.service.storage.protocol import DurableStore


@dataclass(slots=True)
class ServiceState:
    settings: Settings
    registry: Registry
    admin: AdminToken
    tokens: TokenBook
    http: httpx.AsyncClient
    metrics: Metrics
    readiness: Readiness
    ready: bool = False
    store: DurableStore | None = None  # where GET /v1/events reads revisions memory no longer has
    #: the collector's full-collection threshold before this registry served (put back
    #: when it stops; ``collector.space_full_collections``)
    full_every: int | None = None
