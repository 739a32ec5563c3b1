"""The leader lease in PostgreSQL: which registry of several writes, and since when.

One row (``leader``: epoch, owner, advertised URL, expiry), judged on the database's
clock (``clock_timestamp()``) so that no registry's clock matters, the way Patroni
keeps its leader key::

    acquire   the row is missing or expired: take it, epoch + 1, expiry now + ttl
    renew     the row still names my owner and epoch: expiry now + ttl
    release   (clean shutdown) my row expires now: a standby need not wait out the ttl

Every write transaction checks the epoch it was granted (``postgres.FENCE_SQL``), so a
registry that lost the lease while it was paused or cut off cannot land a late write.
Each call is one statement on a connection of the lease's own (not the writer's: a
renewal must not wait behind a big commit); calls block, so run them in a thread.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from pageholder.service.storage.postgres import connect

ACQUIRE_SQL = """
    INSERT INTO leader AS l (id, epoch, owner, url, expires_at)
    VALUES (1, 1, %(owner)s, %(url)s, clock_timestamp() + make_interval(secs => %(ttl)s))
    ON CONFLICT (id) DO UPDATE SET epoch = l.epoch + 1, owner = excluded.owner,
        url = excluded.url, expires_at = excluded.expires_at
    WHERE l.expires_at <= clock_timestamp()
    RETURNING epoch
"""
RENEW_SQL = """
    UPDATE leader SET expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
    WHERE id = 1 AND owner = %(owner)s AND epoch = %(epoch)s
    RETURNING epoch
"""
RELEASE_SQL = """
    UPDATE leader SET expires_at = clock_timestamp()
    WHERE id = 1 AND owner = %(owner)s AND epoch = %(epoch)s
"""
LEADER_SQL = "SELECT url FROM leader WHERE id = 1 AND expires_at > clock_timestamp()"


class LeaderLease:
    """This registry's side of the leader row (``owner`` is unique per process)."""

    def __init__(self, url: str, owner: str, advertise_url: str | None, ttl_s: float) -> None:
        self.url = url
        self.owner = owner
        self.advertise_url = advertise_url
        self.ttl_s = ttl_s
        self._db: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _one(self, sql: str, **params: object) -> tuple[Any, ...] | None:
        with self._lock:
            db = self._db
            if db is None or db.closed or db.broken:
                if db is not None:
                    db.close()
                self._db = db = connect(self.url)
            try:
                cursor = db.execute(sql, {"owner": self.owner, "ttl": self.ttl_s, **params})
                return cursor.fetchone() if cursor.description else None
            except psycopg.OperationalError:
                db.close()  # a new connection next time
                raise

    def acquire(self) -> int | None:
        """The new epoch if this registry is now the leader; None if another one is."""
        row = self._one(ACQUIRE_SQL, url=self.advertise_url)
        return None if row is None else int(row[0])

    def renew(self, epoch: int) -> bool:
        """Extend the lease; False if it was taken (another registry leads now)."""
        return self._one(RENEW_SQL, epoch=epoch) is not None

    def release(self, epoch: int) -> None:
        """Let the lease run out now (a clean stop): a standby takes over at its next try."""
        self._one(RELEASE_SQL, epoch=epoch)

    def leader(self) -> str | None:
        """The current leader's advertised URL (None: none, expired, or not advertised)."""
        row = self._one(LEADER_SQL)
        return None if row is None or row[0] is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
