"""Leader or standby: several registries on one PostgreSQL store, one of them writing.

Every registry started with ``--store postgresql://...`` runs ``Leadership.run``::

    standby   try to take the lease (``storage.leader``) every third of its ttl; until
              then /healthz 200, /readyz and every /v1 call 503 ``not_leader`` naming
              the leader's advertised URL, with Retry-After
    leader    the lease is ours (epoch n): the writer's transactions are fenced by it;
              recover the trees from the store (all of it: a standby keeps nothing
              warm, see below), open the gate; renew every third of the ttl
    lapsed    our own monotonic clock says the lease may have run out (renewals
              failed): answer 503 ``not_leader`` until a renewal succeeds
    deposed   a renewal found the lease taken, a write was fenced, or a commit's
              outcome is unknown (the connection broke during it): step down

Stepping down is *exiting* (``on_fatal``): memory may hold changes the database never
got (or got without memory knowing), and the one path that builds memory back from the
database is a start. A supervisor (systemd ``Restart=``, compose ``restart:``) starts
the process again, and it comes back as a standby. The same start path serves a
takeover: a standby loads the whole store when it becomes leader, so what the old
leader committed is exactly what the new one serves. (Following the events table while
standby would make a takeover cheaper for big registries; recovery of a million holds
takes a few seconds, see bench/RESULTS.md.)
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from pageholder.service.storage.leader import LeaderLease
from pageholder.service.storage.postgres import Fence, PgStore

log = logging.getLogger("pageholder.leader")
_T = TypeVar("_T")


class Role(enum.Enum):
    STANDBY = "standby"
    LEADER = "leader"
    DEPOSED = "deposed"


class Leadership:
    """This registry's role; the gate asks ``serving()`` on every /v1 request."""

    def __init__(self, store: PgStore, lease: LeaderLease) -> None:
        self.store = store
        self.lease = lease
        self.role = Role.STANDBY
        self.epoch = 0
        self.leader_url: str | None = None  # the leader's advertised URL, as last read
        self._valid_until = 0.0  # monotonic: the lease surely runs until then
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_fatal: Callable[[str], None] | None = None

    @property
    def interval_s(self) -> float:
        return self.lease.ttl_s / 3

    def serving(self) -> bool:
        """Leader, and the lease surely still runs by our own clock."""
        return self.role is Role.LEADER and time.monotonic() < self._valid_until

    def refusal(self) -> tuple[str, str | None]:
        """Why /v1 is refused (detail) and whom to ask instead."""
        if self.role is Role.LEADER:
            return "this registry's leader lease could not be renewed in time", None
        if self.role is Role.DEPOSED:
            return "this registry lost the leader lease and is stepping down", self.leader_url
        return "this registry is a standby", self.leader_url

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        # The lease's connection notices a dead server within seconds (postgres.connect);
        # this bound keeps one stuck call from delaying the next renewal.
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.interval_s * 1.5)

    async def run(
        self, become_leader: Callable[[], Awaitable[None]], on_fatal: Callable[[str], None]
    ) -> None:
        """Wait for the lease, lead (``become_leader`` recovers and opens the gate), renew;
        return once deposed (``on_fatal`` was called) or cancelled."""
        self._loop = asyncio.get_running_loop()
        self._on_fatal = on_fatal
        self.store.on_lost = self._lost_from_thread
        while True:
            began = time.monotonic()
            try:
                epoch = await self._call(self.lease.acquire)
                if epoch is not None:
                    break
                self.leader_url = await self._call(self.lease.leader)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("leader lease: cannot reach the store: %s", _line(exc))
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))
        self.epoch = epoch
        self._valid_until = began + self.lease.ttl_s
        self.store.fence = Fence(epoch, self.lease.owner)
        self.role = Role.LEADER
        self.leader_url = self.lease.advertise_url
        log.warning("leader now (epoch %d); loading the store", epoch)
        renewing = asyncio.create_task(self._renew())
        try:
            await become_leader()
            await renewing
        finally:
            renewing.cancel()

    async def _renew(self) -> None:
        while self.role is Role.LEADER:
            await asyncio.sleep(self.interval_s)
            began = time.monotonic()
            try:
                held = await self._call(self.lease.renew, self.epoch)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("leader lease: renewal failed: %s", _line(exc))
                continue  # serving() turns false by itself once the lease may be gone
            if held:
                self._valid_until = began + self.lease.ttl_s
            else:
                self.step_down(f"another registry took the leader lease (ours: epoch {self.epoch})")

    def step_down(self, reason: str) -> None:
        if self.role is Role.DEPOSED:
            return
        self.role = Role.DEPOSED
        log.error("stepping down: %s", reason)
        if self._on_fatal is not None:
            self._on_fatal(f"stepped down: {reason}")

    def _lost_from_thread(self, reason: str) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.step_down, reason)

    async def release(self) -> None:
        """A clean stop: let the lease run out now, so a standby need not wait the ttl."""
        if self.role is Role.LEADER:
            self.role = Role.DEPOSED
            try:
                await self._call(self.lease.release, self.epoch)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("leader lease: not released (it runs out by itself): %s", _line(exc))
        await asyncio.to_thread(self.lease.close)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
