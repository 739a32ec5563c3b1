"""Settings: one ``Settings`` object, read from ``PAGEHOLDER_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
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
    admin_token: str | None = Field(default=None, min_length=16)
    metrics_open: bool = Field(default=False, description="serve /metrics without a token")
    webhook_allow_loopback: bool = True
    webhook_allow_private: bool = True
    max_body_bytes: int = 8 * 1024 * 1024

    @property
    def in_memory(self) -> bool:
        return self.data_dir == MEMORY
