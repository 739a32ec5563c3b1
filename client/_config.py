"""Small typed settings of a client: ``Timeout`` and ``Retry``.

    Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)   seconds, per request
    Retry(attempts=3, backoff_s=0.1, max_backoff_s=2.0,
          statuses=frozenset({502, 503, 504}), max_retry_after_s=30.0)

Only idempotent calls are retried (``GET``, ``PUT``, ``DELETE``; never ``POST`` or
``PATCH``): after a transport error (no answer) or an answer whose status is in
``statuses``. The n-th retry waits ``min(max_backoff_s, backoff_s * 2**(n-1))``, or what
the answer's ``Retry-After`` asks for; an answer asking for more than
``max_retry_after_s`` is not waited for: its error is raised at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

__all__ = ["DEFAULT_RETRY", "DEFAULT_TIMEOUT", "Retry", "Timeout"]


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds to wait for a connection, each read and write, and a pooled connection."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    @classmethod
    def of(cls, value: Timeout | float) -> Timeout:
        """``value`` itself, or a ``Timeout`` with every phase set to ``value``."""
        if isinstance(value, Timeout):
            return value
        seconds = float(value)
        return cls(seconds, seconds, seconds, seconds)

    def at_least(self, read: float) -> Timeout:
        """This timeout with ``read`` raised to at least ``read`` seconds."""
        return Timeout(self.connect, max(self.read, read), self.write, self.pool)

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True, slots=True)
class Retry:
    """How idempotent calls are retried; ``attempts`` counts the first one too."""

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    statuses: frozenset[int] = field(default=frozenset({502, 503, 504}))
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff_s, max_backoff_s and max_retry_after_s must be >= 0")

    @classmethod
    def never(cls) -> Retry:
        """One attempt only."""
        return cls(attempts=1)

    def backoff(self, retry: int) -> float:
        """Seconds before the ``retry``-th retry (1-based) when the server did not say."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** (retry - 1))

    def delay(self, retry: int, retry_after: str | None) -> float | None:
        """Seconds before the ``retry``-th retry, honouring a ``Retry-After`` header;
        None when the server asks for a wait longer than ``max_retry_after_s``."""
        asked = parse_retry_after(retry_after)
        if asked is None:
            return self.backoff(retry)
        return asked if asked <= self.max_retry_after_s else None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP-date), or None.

    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


DEFAULT_TIMEOUT: Final = Timeout()
DEFAULT_RETRY: Final = Retry()
