"""Holder leases: a holder's liveness made explicit (DESIGN.md, "Holder leases").

Vocabulary::

    lease     a holder's ``ttl_s`` and its ``deadline`` on the registry's monotonic clock
    live      ``clock() <= deadline``
    expired   ``clock() > deadline``. Derived on every read (``Lease.expired``), never
              swept: the holder's holds read ``orphaned`` the moment it expires, and a
              hold it asks for is refused (``lease_expired``) from then on
    noted     the registry has acted on an expiry: counted it and, for
              ``on_expiry: reclaim``, started erasing the holds. One timer per lease
              fires at its deadline; a keepalive in time only moves the deadline, and
              the timer, finding the lease live, re-arms itself for the new one
    revive    a keepalive from an expired holder: its remaining holds read ``held``
              again; a reclaim in progress stops at its next slice
    reclaim   erase every hold of an expired holder, zone by zone, in slices that hold
              the zone's write lock for at most ``RECLAIM_SLICE_S`` and then yield to
              the loop (10^6 holds never stall it)

Transitions happen in exactly three places, where their events are emitted:
``_expired`` (``holder.expired``), ``_revived`` (``holder.revived``) and ``reclaimed``
(``hold.reclaimed``). ``LeaseStats`` counts them for the metrics.

A restart (or a failover) restarts every lease at ``now + ttl_s`` (``restart``): the
registry's own downtime never expires anyone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pageholder.service.core.collector import full_collections_deferred
from pageholder.service.core.errors import (
    InvalidRequest,
    LeaseExpired,
    LeaseNotExpired,
    NoLease,
)
from pageholder.service.core.events import EventType, holder_event
from pageholder.service.core.model import Hold, Holder, HoldState, Lease, OnExpiry
from pageholder.service.core.radix import Entry
from pageholder.service.core.rules import MAX_LEASE_TTL_S, MIN_LEASE_TTL_S, RECLAIM_SLICE_S
from pageholder.service.core.zone import ZoneHolds

if TYPE_CHECKING:
    from pageholder.service.core.registry import Registry

#: Entries a reclaim slice scans between two looks at the clock.
SCAN_STEP = 128


def validate_lease_ttl(ttl_s: float | None) -> None:
    if ttl_s is not None and not MIN_LEASE_TTL_S <= ttl_s <= MAX_LEASE_TTL_S:
        raise InvalidRequest(
            f"lease_ttl_s must be null or between {MIN_LEASE_TTL_S:g} and {MAX_LEASE_TTL_S:g}",
            field="lease_ttl_s",
        )


@dataclass(slots=True)
class LeaseStats:
    """What leases did since start (the metrics read it at scrape time)."""

    expirations: int = 0
    revivals: int = 0
    reclaimed_holds: int = 0
    reclaimed_pages: int = 0


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What a reclaim erased."""

    holds: int = 0
    pages: int = 0

    def __add__(self, other: Reclaimed) -> Reclaimed:
        return Reclaimed(self.holds + other.holds, self.pages + other.pages)


class Leases:
    """Every holder's lease: start, renew, expire, revive, reclaim. Owned by ``Registry``."""

    def __init__(
        self,
        registry: Registry,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        slice_s: float = RECLAIM_SLICE_S,
    ) -> None:
        self._registry = registry
        self.clock = monotonic
        self._wall = wall
        self.slice_s = slice_s
        self.stats = LeaseStats()
        self.leased: set[Holder] = set()
        self._reclaims: dict[Holder, asyncio.Task[Reclaimed]] = {}

    # -- starting and stopping ---------------------------------------------------------

    def start(self, holder: Holder, ttl_s: float | None) -> None:
        """Give ``holder`` a lease of ``ttl_s`` that is live until ``now + ttl_s`` (None:
        take its lease away). Also how a restart restarts every lease."""
        self.stop(holder)
        if ttl_s is None:
            return
        holder.lease = Lease(ttl_s, self.clock, self.clock() + ttl_s)
        self.leased.add(holder)
        self._arm(holder)

    restart = start

    def stop(self, holder: Holder) -> None:
        """Take the lease away (the holder is removed, or PATCHed to no lease)."""
        lease = holder.lease
        if lease is not None and lease.timer is not None:
            lease.timer.cancel()
        holder.lease = None
        self.leased.discard(holder)

    # -- renewing ------------------------------------------------------------------------

    def keepalive(self, holder: Holder) -> Lease:
        """Renew: live until ``now + ttl_s``. An expired holder is revived (its expiry is
        noted first if the timer has not run yet, so that both are counted once).
        Cost: O(1)."""
        lease = holder.lease
        if lease is None:
            raise NoLease(f"holder {holder.name!r} has no lease", holder=holder.name)
        now = self.clock()
        if now > lease.deadline:
            if not lease.noted:  # the timer has not run yet; the revival comes first
                self._expired(holder, reclaim=False)
            self._revived(holder)
        elif lease.noted:  # expired before, renewed by a PATCH meanwhile: say so once
            self._revived(holder)
        lease.deadline = now + lease.ttl_s
        # The timer is not moved: it fires at the old deadline, finds the lease live and
        # re-arms itself (a keepalive costs no timer churn).
        return lease

    def expires_at(self, lease: Lease) -> float:
        """The lease's deadline as wall-clock epoch seconds (for people and clients)."""
        return self._wall() + (lease.deadline - self.clock())

    def check_may_hold(self, holder: Holder) -> None:
        """Refuse a new hold by an expired holder. Call under the zone's write lock."""
        if holder.expired:
            raise LeaseExpired(
                f"holder {holder.name!r}: its lease expired; keep it alive to hold pages",
                holder=holder.name,
            )

    def expired_holders(self) -> list[Holder]:
        """Holders whose lease has run out now. Cost: O(leased holders)."""
        return [h for h in self.leased if h.expired]

    # -- expiry (the timer) ----------------------------------------------------------------

    def _arm(self, holder: Holder) -> None:
        lease = holder.lease
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous test): readers still see expiry
            return
        delay = max(0.0, lease.deadline - self.clock())
        lease.timer = loop.call_later(delay, self.poll, holder)

    def poll(self, holder: Holder) -> None:
        """The timer's callback: note an expiry, or re-arm for a deadline a keepalive
        moved. (Tests with a fake clock call it after moving the clock.)"""
        lease = holder.lease
        if lease is None or self._registry.holders.get(holder.name) is not holder:
            return
        lease.timer = None
        if not lease.expired():
            self._arm(holder)
            return
        if not lease.noted:
            self._expired(holder)

    def _expired(self, holder: Holder, *, reclaim: bool = True) -> None:
        """THE place where a holder expires (event: ``holder.expired``)."""
        assert holder.lease is not None
        holder.lease.noted = True
        self.stats.expirations += 1
        self._tell(EventType.HOLDER_EXPIRED, holder)
        if reclaim and holder.on_expiry is OnExpiry.RECLAIM:
            self.reclaim_in_background(holder)

    def _revived(self, holder: Holder) -> None:
        """THE place where an expired holder comes back (event: ``holder.revived``)."""
        assert holder.lease is not None
        holder.lease.noted = False
        self.stats.revivals += 1
        self._tell(EventType.HOLDER_REVIVED, holder)

    def _tell(self, kind: EventType, holder: Holder) -> None:
        """A lease's change of state as a revision of its own (nothing to store but the
        event: leases restart at every start)."""
        pending = self._registry.submit([], _nothing, [holder_event(kind, holder.name)])
        if pending is not None:  # nobody awaits it: a failed commit is the store's to log
            pending.add_done_callback(_retrieved)

    def restart_all(self) -> None:
        """Every lease live again until ``now + ttl_s``, its timer on this event loop
        (after a recovery that ran in a worker thread, where no timer could be armed)."""
        for holder in list(self.leased):
            lease = holder.lease
            if lease is not None:
                self.start(holder, lease.ttl_s)

    def settings_changed(self, holder: Holder) -> None:
        """``on_expiry`` changed: an expired holder that now says ``reclaim`` is reclaimed."""
        if holder.expired and holder.on_expiry is OnExpiry.RECLAIM:
            lease = holder.lease
            assert lease is not None
            if not lease.noted:
                self._expired(holder)
            else:
                self.reclaim_in_background(holder)

    # -- reclaim ---------------------------------------------------------------------------

    def reclaimed(self, holder: Holder, holds: Sequence[Hold]) -> None:
        """THE place where holds of an expired holder were erased without asking it
        (event: ``hold.reclaimed``)."""
        if not holds:
            return
        self.stats.reclaimed_holds += len(holds)
        self.stats.reclaimed_pages += sum(h.nr_pages for h in holds)

    def reclaim_task(self, holder: Holder) -> asyncio.Task[Reclaimed] | None:
        """The ``on_expiry: reclaim`` task running for ``holder``, if any."""
        return self._reclaims.get(holder)

    def reclaim_in_background(self, holder: Holder) -> None:
        """``on_expiry: reclaim``: erase the holds in a task (one per holder at a time)."""
        running = self._reclaims.get(holder)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(
            self.reclaim(holder), name=f"reclaim:{holder.name}"
        )
        self._reclaims[holder] = task

        def forget(done: asyncio.Task[Reclaimed]) -> None:
            if self._reclaims.get(holder) is done:
                del self._reclaims[holder]
            if not done.cancelled():
                done.exception()  # retrieved: a failed commit was logged by the store

        task.add_done_callback(forget)

    async def reclaim_now(self, holder: Holder) -> Reclaimed:
        """The admin's reclaim: erase every hold of an expired holder (409 if live)."""
        if not holder.expired:
            why = "has no lease" if holder.lease is None else "has a live lease"
            raise LeaseNotExpired(
                f"holder {holder.name!r} {why}; only an expired holder's holds are reclaimed",
                holder=holder.name,
            )
        lease = holder.lease
        assert lease is not None
        if not lease.noted:
            self._expired(holder)  # noted before its holds go, like the timer would
        return await self.reclaim(holder)

    async def reclaim(self, holder: Holder) -> Reclaimed:
        """Erase ``holder``'s holds while it stays expired, zone by zone in bounded slices.

        Each slice takes the zone's write lock, erases what it finds for at most
        ``slice_s``, journals it, drops the lock and yields: lookups and holds of other
        holders go on in between. A revival stops it at the next slice (what was erased
        stays erased); a hold being released is erased too (the release's settle then
        finds another generation and changes nothing). Waits until it is all committed.
        """
        total = Reclaimed()
        pending: list[asyncio.Future[None]] = []
        # Full collections wait until it is done (``core.collector``): each one would walk
        # the holder's tree it is erasing (20-30 ms for 10^6 holds made after start, over
        # and over); afterwards the tree is gone and the one that is due is short.
        with full_collections_deferred():
            for zh in self._registry.zones:
                cursor: int | None = zh.zone.start_pfn
                while cursor is not None:
                    async with zh.lock.writer_lock:
                        enrolled = self._registry.holders.get(holder.name)
                        if not holder.expired or enrolled is not holder:
                            cursor = None
                            break
                        erased, cursor = self._slice(zh, holder, cursor)
                        if erased:
                            self.reclaimed(holder, erased)
                            total += Reclaimed(len(erased), sum(h.nr_pages for h in erased))
                            future = self._registry.journal_erased(zh, [], reclaimed=erased)
                            if future is not None:
                                pending.append(future)
                    # Nothing is held across this yield: the next slice looks everything up
                    # again from ``cursor``.
                    await asyncio.sleep(0)
                if holder.lease is None or not holder.expired:
                    break
        for future in pending:
            await self._registry.durable(future)
        return total

    def _slice(self, zh: ZoneHolds, holder: Holder, start: int) -> tuple[list[Hold], int | None]:
        """Erase ``holder``'s holds from ``start`` on for at most ``slice_s``; returns them
        and where to go on (None: the zone is done). Under the write lock."""
        tree = zh.tree
        end = zh.zone.end_pfn
        stop_at = time.perf_counter() + self.slice_s
        erased: list[Hold] = []
        cursor: int | None = start
        while cursor is not None:  # at least one step per slice: it always progresses
            mine: list[Entry] = []
            scanned = 0
            next_cursor: int | None = None
            for entry in tree.items(cursor, end):
                if entry.value is holder:
                    mine.append(entry)
                scanned += 1
                if scanned == SCAN_STEP:
                    next_cursor = entry.head + (1 << entry.order)
                    break
            for entry in mine:
                zh.erase(entry)
                erased.append(Hold(entry.head, entry.order, holder, HoldState.HELD, entry.stamp))
            cursor = next_cursor
            if time.perf_counter() >= stop_at:
                break
        return erased, cursor


def _nothing() -> None:
    """The undo of a change that is only an event."""


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
