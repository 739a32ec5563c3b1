"""A standby's thread that keeps its registry warm from the leader's commits.

Each commit of the leader notifies ``postgres.CHANNEL`` (inside its transaction, so
the notification is delivered only if it committed). The follower LISTENs on a
connection of its own and, woken by a notification or every ``POLL_S`` whatever
happens (a notification can be lost with its connection), applies every committed
revision after the last one it applied, in order (``changes.read_changes`` and
``changes.apply``, a chunk of revisions per snapshot).

At takeover the registry stops the thread (``stop``), then calls ``catch_up`` once
more: after the epoch bump no old leader's write can commit any more (its transaction
held the leader row ``FOR SHARE``; the bump waited for it), so that last catch-up sees
everything ever acknowledged. If following failed (``stale``: a revision compacted
away, a row that does not fit), the registry loads the whole store instead.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from pageholder.service.core.registry import Registry
from pageholder.service.storage.changes import CannotFollow, apply, read_changes
from pageholder.service.storage.postgres import CHANNEL, connect

log = logging.getLogger("pageholder.follower")

#: the longest a committed revision waits for the standby without a notification
POLL_S = 1.0


class Follower:
    """Applies the leader's committed revisions to ``registry``, from ``after`` on."""

    def __init__(self, url: str, registry: Registry, after: int) -> None:
        self.url = url
        self.registry = registry
        self.last = after  # the last revision applied
        self.applied = 0  # revisions applied since the load
        #: why memory can no longer follow (then the takeover loads the whole store)
        self.stale: str | None = None
        self._db: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pageholder-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most one catch-up and ``POLL_S``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def catch_up(self) -> int:
        """Apply every revision committed after ``last``; how many. Blocking; one caller
        at a time (the thread, or the takeover once the thread stopped)."""
        done = 0
        while True:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = connect(self.url)
            changes = read_changes(self._db, self.last)
            if not changes.revisions:
                return done
            apply(self.registry, changes)
            self.last = changes.revisions[-1].rev
            self.applied += len(changes.revisions)
            done += len(changes.revisions)

    def _run(self) -> None:
        listener: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                try:
                    if listener is None or listener.closed or listener.broken:
                        listener = connect(self.url)
                        listener.execute(f"LISTEN {CHANNEL}")
                    for _ in listener.notifies(timeout=POLL_S, stop_after=1):
                        pass  # a wake-up: what to apply is read from the events table
                    if not self._stop.is_set():
                        self.catch_up()
                except psycopg.Error as exc:  # the store is away: try again, it may be back
                    log.warning("standby: cannot follow the leader's commits: %s", exc)
                    if listener is not None:
                        listener.close()
                    listener = None
                    self._stop.wait(POLL_S)
        except Exception as exc:  # CannotFollow, or a bug: never serve half-applied memory
            self.stale = str(exc)
            level = logging.WARNING if isinstance(exc, CannotFollow) else logging.ERROR
            log.log(level, "standby: memory stopped following (a takeover reloads): %s", exc)
        finally:
            if listener is not None:
                listener.close()

    def close(self) -> None:
        self.stop()
        if self._db is not None:
            self._db.close()
