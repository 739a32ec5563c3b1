"""Bearer tokens: the admin token and per-holder tokens.

Holder tokens are returned once at registration and kept only as SHA-256 hashes (they
are 256-bit random strings, so a fast hash is enough). A token is found by its hash;
the admin token is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pageholder.service.core.registry import Registry

ADMIN_TOKEN_FILE = "admin-token"


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the admin, or one holder (by name)."""

    holder: str | None

    @property
    def is_admin(self) -> bool:
        return self.holder is None


ADMIN_PRINCIPAL = Principal(None)


@dataclass(frozen=True, slots=True)
class AdminToken:
    token: str
    generated: bool  # True when made at this start: print it once
    path: Path | None  # where it is kept, if anywhere


def load_admin_token(configured: str | None, data_dir: Path | None) -> AdminToken:
    """The admin token: configured, read from the data dir, or generated there (0600)."""
    if configured:
        return AdminToken(configured, generated=False, path=None)
    if data_dir is None:
        return AdminToken(new_token("pha"), generated=True, path=None)
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        return AdminToken(path.read_text().strip(), generated=False, path=path)
    except FileNotFoundError:
        pass
    token = new_token("pha")
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return AdminToken(token, generated=True, path=path)


class TokenBook:
    """Resolves bearer tokens to principals."""

    def __init__(self, admin_token: str, registry: Registry) -> None:
        self._admin_hash = hash_token(admin_token)
        self._registry = registry

    def resolve(self, token: str) -> Principal | None:
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return ADMIN_PRINCIPAL
        holder = self._registry.holder_by_token_hash(digest)
        return None if holder is None else Principal(holder.name)
