"""Keeping a holder's lease alive: the schedule, without I/O.

A holder with a lease must send ``POST /v1/holders/{name}/keepalive`` within ``ttl_s``
or its holds turn ``orphaned``. ``KeepaliveSchedule`` decides when the next keepalive
goes out and what a failure means; the sync and async clients (``_client.py``) run it,
in a thread or a task, while they are open::

    answer                       next keepalive in
    200 {state, ttl_s, ...}      ttl_s / 3 (the first one goes out at once)
    no_lease (409)               NO_LEASE_RECHECK_S (a lease may be set later by PATCH)
    anything else (the registry  min(ttl_s / 3, RETRY_MIN_S * 2**(n-1)): soon, since a
      restarting, unreachable,   restart restarts every lease and the holder must be
      a 5xx, ...)                back in time; reported through ``on_failure`` and a
                                 WARNING log line on logger ``pageholder.client``

A success after failures is logged (INFO) too, so that the log tells when it recovered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ._exceptions import ClientError, NoLease
from ._models import Lease

__all__ = ["KeepaliveFailure", "KeepaliveSchedule", "OnKeepaliveFailure"]

logger = logging.getLogger("pageholder.client")

#: Keepalives per TTL: the lease survives two lost keepalives in a row.
PER_TTL: Final = 3
#: The first retry after a failed keepalive; later ones double up to ttl_s / 3.
RETRY_MIN_S: Final = 0.2
#: How often a holder without a lease is asked again (one may be set later).
NO_LEASE_RECHECK_S: Final = 30.0
#: Until the first answer says the TTL: retry at most this far apart.
UNKNOWN_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class KeepaliveFailure:
    """A keepalive that failed: ``failures`` in a row so far, and when the lease runs
    out if none gets through (None until one keepalive succeeded)."""

    holder: str
    error: ClientError
    failures: int
    expires_at: datetime | None


OnKeepaliveFailure = Callable[[KeepaliveFailure], None]


class KeepaliveSchedule:
    """When to send the next keepalive for ``holder``, given the last answer."""

    def __init__(self, holder: str, on_failure: OnKeepaliveFailure | None = None) -> None:
        self.holder = holder
        self.on_failure = on_failure
        self.lease: Lease | None = None
        self.failures = 0
        self.sent = 0

    @property
    def interval(self) -> float:
        """Seconds between keepalives: a third of the TTL."""
        return UNKNOWN_INTERVAL_S if self.lease is None else self.lease.ttl_s / PER_TTL

    def succeeded(self, lease: Lease) -> float:
        """The keepalive got through; returns the delay until the next one."""
        self.sent += 1
        if self.failures:
            logger.info(
                "keepalive for holder %r got through again after %d failure(s); lease %s",
                self.holder,
                self.failures,
                lease.state,
            )
        self.failures = 0
        self.lease = lease
        return self.interval

    def failed(self, error: ClientError) -> float:
        """The keepalive failed; says so loudly and returns the delay until a retry."""
        if isinstance(error, NoLease):
            logger.info("holder %r has no lease: nothing to keep alive (yet)", self.holder)
            return NO_LEASE_RECHECK_S
        self.failures += 1
        expires = None if self.lease is None else self.lease.expires_at
        logger.warning(
            "keepalive for holder %r failed (%d in a row): %s; its lease expires at %s "
            "unless one gets through",
            self.holder,
            self.failures,
            error,
            "?" if expires is None else expires.isoformat(),
        )
        if self.on_failure is not None:
            try:
                self.on_failure(KeepaliveFailure(self.holder, error, self.failures, expires))
            except Exception:  # the callback's bug must not stop the keepalives
                logger.exception("on_failure callback of holder %r's keepalive", self.holder)
        return min(self.interval, RETRY_MIN_S * 2.0 ** (self.failures - 1))
