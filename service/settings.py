"""Settings: one ``Settings`` object, read from ``PAGEHOLDER_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MEMORY = ":memory:"


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "pageholder")


class Settings(BaseSettings):
    """Everything the service can be told; the CLI's flags override these."""

    model_config = SettingsConfigDict(env_prefix="PAGEHOLDER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    layout: str = Field(default="default", description="default | host | a TOML file")
    data_dir: str = Field(default_factory=default_data_dir, description=":memory: keeps nothing")
    store: str | None = Field(
        default=None,
        description="postgresql://... keeps state in PostgreSQL (several registries, one "
        "leader); unset: SQLite in the data dir",
    )
    advertise_url: str | None = Field(
        default=None, description="the URL a standby names when it answers not_leader"
    )
    leader_ttl_s: float = Field(
        default=6.0,
        ge=0.5,
        le=600,
        description="the leader lease (PostgreSQL store): renewed every third of it; a "
        "standby takes over once it ran out",
    )
    admin_token: str | None = Field(default=None, min_length=16)
    metrics_open: bool = Field(default=False, description="serve /metrics without a token")
    webhook_allow_loopback: bool = True
    webhook_allow_private: bool = True
    # The same defaults as the webhook caller's own (settings may not import it; a test
    # proves they agree).
    webhook_retry_min_s: float = Field(
        default=0.05,
        gt=0,
        le=60,
        description="minimum wait between two attempts of a release call, whatever "
        "Retry-After says (doubles, with jitter, up to webhook_retry_max_s)",
    )
    webhook_retry_max_s: float = Field(default=2.0, gt=0, le=600)
    webhook_max_calls: int = Field(
        default=20, ge=1, le=1000, description="attempts per release delivery"
    )
    max_body_bytes: int = 8 * 1024 * 1024
    header_timeout_s: float = Field(default=10.0, gt=0, description="headers must arrive within")
    body_timeout_s: float = Field(default=30.0, gt=0, description="a body must arrive within")
    shutdown_grace_s: int = Field(
        default=10, ge=1, description="SIGTERM: in-flight requests finish within, then cancelled"
    )

    events_retention: int = Field(
        default=100_000, ge=1, description="revisions kept for GET /v1/events at least"
    )
    events_keepalive_s: float = Field(
        default=15.0, gt=0, description="a comment on every event stream this often"
    )
    events_buffer: int = Field(
        default=4096, ge=1, description="event parts a subscriber may fall behind (overflow)"
    )
    events_send_timeout_s: float = Field(
        default=30.0, gt=0, description="a subscriber that takes no bytes this long is dropped"
    )
    events_flush_interval_s: float = Field(
        default=0.025, ge=0, description="a busy stream sends what piled up at most this often"
    )

    @model_validator(mode="after")
    def _retry_bounds(self) -> Settings:
        if self.webhook_retry_min_s > self.webhook_retry_max_s:
            raise ValueError("webhook_retry_min_s must not exceed webhook_retry_max_s")
        return self

    @model_validator(mode="after")
    def _store_url(self) -> Settings:
        if self.store is not None and not self.store.startswith(("postgresql://", "postgres://")):
            raise ValueError("store must be a postgresql:// URL (unset: SQLite in the data dir)")
        return self

    @property
    def in_memory(self) -> bool:
        return self.data_dir == MEMORY

    @property
    def shared(self) -> bool:
        """State lives in PostgreSQL: a leader lease decides who writes."""
        return self.store is not None
