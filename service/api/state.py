"""What one running service owns: its settings, registry, tokens, HTTP client, metrics."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from ..registry import Registry
from ..settings import Settings
from .auth import AdminToken, TokenBook
from .metrics import Metrics


@dataclass(slots=True)
class ServiceState:
    settings: Settings
    registry: Registry
    admin: AdminToken
    tokens: TokenBook
    http: httpx.AsyncClient
    metrics: Metrics
    ready: bool = False
