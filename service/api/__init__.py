"""The FastAPI layer: ``create_app(settings)`` builds the service."""

from __future__ import annotations

from pageholder.service.api.app import create_app

__all__ = ["create_app"]
