"""The hold registry: holders, holds, and the release state machine.

Each zone has one ``RadixTree`` of holds and one ``aiorwlock.RWLock``: lookups take the
read lock, changes the write lock (the RFC's ``zone->page_holder_lock``). No lock is ever
held while a holder's release handler runs: a release marks the hold ``releasing`` under
the write lock, drops the lock, calls the handler, and settles under the write lock again.

A hold lives in its zone's tree as one entry (``zone.py`` says how, and holds the
synchronous steps that change a zone); this module decides *which* step runs, when, and
for whom.

State machine of one hold::

    (free) --set_hold--> held --release/offline--> releasing --handler ok--> (erased)
                          ^                            |
                          +------ handler failed ------+

A settle that finds a different generation at the head (the hold was dropped and the
page held again while the handler ran) changes nothing.

A holder may have a lease (``leases.py``): once it expires its holds read ``orphaned``,
it may not start new ones (``lease_expired``), and a release call that fails for it
fails with ``lease_expired`` after at most ``ORPHAN_CALL_TIMEOUT_S``.

``actor`` is the name of the holder making a request, or ``ADMIN`` (None).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Final

from pageholder.service.core.commits import Commits
from pageholder.service.core.errors import (
    CrossesZone,
    Forbidden,
    HolderExists,
    HolderHasHolds,
    HolderNotFound,
    InvalidRequest,
    Misaligned,
    NoReleaseHandler,
    NotHead,
    PageHeld,
    PageNotHeld,
    PageReleasing,
    PfnNotFound,
    ReleaseFailed,
    ReleaseTimeout,
)
from pageholder.service.core.events import (
    EventBody,
    EventType,
    hold_events,
    holder_event,
)
from pageholder.service.core.journal import (
    Journal,
    Op,
    holder_op,
    set_ops,
    unhold_ops,
    unholder_op,
)
from pageholder.service.core.layout import MemoryBlock, MemoryLayout
from pageholder.service.core.leases import Leases, validate_lease_ttl
from pageholder.service.core.model import (
    BlockState,
    BlockUsage,
    FailureReason,
    Hold,
    Holder,
    HoldState,
    OnExpiry,
    PageFailure,
    PageInfo,
    PageRef,
    ReleaseAnswer,
    ReleaseCaller,
    Released,
    SetResult,
    SetStatus,
)
from pageholder.service.core.radix import MAX_ORDER, Entry, RadixTree
from pageholder.service.core.rules import (
    HOLDER_NAME,
    MAX_TIMEOUT_S,
    MIN_TIMEOUT_S,
    ORPHAN_CALL_TIMEOUT_S,
)
from pageholder.service.core.slices import all_zones_written
from pageholder.service.core.sweeps import Erased, HolderLocks, erase_all, remark
from pageholder.service.core.watchers import EventLog
from pageholder.service.core.zone import RELEASING, ZoneHolds

if TYPE_CHECKING:
    from pageholder.service.core.offline import BlockStates

ADMIN: Final = None
Actor = str | None


class Unset(Enum):
    UNSET = 0


UNSET: Final = Unset.UNSET


def validate_holder_settings(timeout_s: float, release_url: str | None) -> None:
    if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:
        raise InvalidRequest(
            f"timeout_s must be between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S}", field="timeout_s"
        )
    if release_url is not None and not release_url:
        raise InvalidRequest("release_url must not be empty", field="release_url")


class Registry:
    """Holders and their holds over one memory layout; see the module docstring."""

    def __init__(
        self,
        layout: MemoryLayout,
        release_caller: ReleaseCaller,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        journal: Journal | None = None,
    ) -> None:
        self.layout = layout
        self.journal = journal
        self.events = EventLog()
        self.zones = [ZoneHolds(zone) for zone in layout.zones]
        self.commits = None if journal is None else Commits(journal, self.zones)
        self.holders: dict[str, Holder] = {}
        self._by_token_hash: dict[str, Holder] = {}
        from pageholder.service.core.offline import BlockStates  # offline owns them

        self.blocks: BlockStates = BlockStates(layout)
        self._caller = release_caller
        self._clock = clock
        self._last_stamp = 0
        # In-flight single-page releases by generation (zone, head, stamp): a hold dropped
        # and made again by someone else meanwhile is another hold with its own call.
        self._releases: dict[tuple[int, int, int], asyncio.Task[Released]] = {}
        self.leases = Leases(self, monotonic=monotonic, wall=clock)
        self._holder_locks = HolderLocks()
        self._sweeps: set[asyncio.Future[bool]] = set()  # forced deletes' erasures
        # Holders dropped by a removal that is not committed yet: their holds may be put
        # back by an undo (``restore``), since the removal may be undone after it.
        self._removing: set[Holder] = set()

    # -- holders ---------------------------------------------------------------------

    def holder(self, name: str) -> Holder:
        try:
            return self.holders[name]
        except KeyError:
            raise HolderNotFound(f"no holder named {name!r}", holder=name) from None

    def submit(
        self, ops: Sequence[Op], undo: Callable[[], None], events: Sequence[EventBody] = ()
    ) -> asyncio.Future[None] | None:
        """Hand ``ops`` and the change's ``events`` (one revision) to the journal; call
        inside the critical section that made the change, so the journal (and the
        revision numbers) see changes in memory's order. If the commit fails, ``undo``
        runs before the future fails, newest change first and under every zone's write
        lock (``core.commits``): it must take back exactly this change. Watchers are
        offered the revision once it committed (at once without a journal)."""
        if not events:
            if self.commits is None or not ops:
                return None
            return self.commits.submit(ops, undo)
        log = self.events
        revision = log.next(self._clock(), events)
        if self.commits is None:
            log.publish(revision)
            return None
        pending = self.commits.submit(ops, undo, revision)

        def committed(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is None:
                log.publish(revision)

        pending.add_done_callback(committed)
        return pending

    async def add_holder(
        self,
        name: str,
        *,
        release_url: str | None = None,
        timeout_s: float = 10.0,
        description: str = "",
        token_hash: str = "",
        webhook_secret: str = "",
        lease_ttl_s: float | None = None,
        on_expiry: OnExpiry = OnExpiry.KEEP,
    ) -> Holder:
        if not HOLDER_NAME.fullmatch(name):
            raise InvalidRequest(
                f"holder name {name!r} must match {HOLDER_NAME.pattern}", field="name"
            )
        validate_holder_settings(timeout_s, release_url)
        validate_lease_ttl(lease_ttl_s)
        if name in self.holders:
            raise HolderExists(f"holder {name!r} already exists", holder=name)
        holder = Holder(
            name,
            release_url=release_url,
            timeout_s=timeout_s,
            description=description,
            created=self._clock(),
            token_hash=token_hash,
            webhook_secret=webhook_secret,
            on_expiry=on_expiry,
        )
        self.enrol(holder)
        self.leases.start(holder, lease_ttl_s)  # a new lease starts live
        created = [holder_event(EventType.HOLDER_CREATED, name)]
        await self.durable(self.submit([holder_op(holder)], lambda: self._drop(holder), created))
        return holder

    def enrol(self, holder: Holder) -> None:
        self.holders[holder.name] = holder
        if holder.token_hash:
            self._by_token_hash[holder.token_hash] = holder

    def unenrol(self, holder: Holder) -> None:
        """Forget ``holder`` (its holds must be gone): the inverse of ``enrol``."""
        self._drop(holder)

    def reset(self) -> None:
        """Empty: no holder, no hold, every block online, no revision (to be loaded again
        from a store, ``storage.recovery``). Nothing else may use the registry meanwhile."""
        for zh in self.zones:
            zh.tree = RadixTree()
            zh.pages_of.clear()
        for holder in list(self.holders.values()):
            holder.holds = holder.held_pages = 0
            self._drop(holder)
        self.blocks.clear()
        self.events.start_at(0)

    def _drop(self, holder: Holder) -> None:
        if self.holders.get(holder.name) is holder:
            del self.holders[holder.name]
            self._by_token_hash.pop(holder.token_hash, None)
            self.leases.stop(holder)

    @staticmethod
    async def durable(pending: asyncio.Future[None] | None) -> None:
        """Wait until a submitted change committed. shield(): a client that goes away
        does not cancel the commit (nor the undo if it fails)."""
        if pending is not None:
            await asyncio.shield(pending)

    def holder_by_token_hash(self, token_hash: str) -> Holder | None:
        return self._by_token_hash.get(token_hash)

    async def update_holder(
        self,
        name: str,
        *,
        release_url: str | None | Unset = UNSET,
        timeout_s: float | None = None,
        description: str | None = None,
        lease_ttl_s: float | None | Unset = UNSET,
        on_expiry: OnExpiry | None = None,
    ) -> Holder:
        """Change a holder's settings. Setting ``lease_ttl_s`` starts the lease live (None
        takes it away). Cost: O(zones); when the release handler appears or disappears
        while the holder has holds, O(its holds) more, in slices (``sweeps.py``): every
        hold's NO_HANDLER mark follows, one zone locked at a time for one slice.

        No reader ever sees a hold whose holder lacks a handler without the mark
        (``zone.py``: the mark is a filter, checked against the holder): a handler going
        away is marked on every hold first (new holds of the holder are marked from the
        start of it) and dropped after; a handler coming is set at once and the marks,
        stale from then on, are cleared after. So ``removable`` is exact at every moment
        for the URL the holder has at that moment. One change of a holder runs at a time;
        it is journaled (one revision) where the settings change, and the call returns
        once it committed and the marks are done."""
        holder = self.holder(name)
        new_url = holder.release_url if release_url is UNSET else release_url
        validate_holder_settings(holder.timeout_s if timeout_s is None else timeout_s, new_url)
        if lease_ttl_s is not UNSET:
            validate_lease_ttl(lease_ttl_s)
        async with self._holder_locks.one_at_a_time(holder):
            self.check_enrolled(holder)
            gains = not holder.has_release_handler and new_url is not None
            if holder.has_release_handler and new_url is None:
                holder.no_handler_mark = True  # its new holds are marked from now on
                try:
                    await remark(self.zones, holder, has_handler=False)
                except BaseException:
                    # Cancelled (shutdown): the URL stays; marks set so far are stale and
                    # harmless (a filter), later holds are not marked.
                    holder.no_handler_mark = False
                    raise
            before = (holder.release_url, holder.timeout_s, holder.description)
            lease_before = (holder.lease_ttl_s, holder.on_expiry)
            holder.release_url = new_url
            holder.no_handler_mark = new_url is None
            if timeout_s is not None:
                holder.timeout_s = timeout_s
            if description is not None:
                holder.description = description
            if on_expiry is not None:
                holder.on_expiry = on_expiry
            if lease_ttl_s is not UNSET:
                self.leases.start(holder, lease_ttl_s)
            self.leases.settings_changed(holder)

            def undo() -> None:
                had_handler = holder.has_release_handler
                holder.release_url, holder.timeout_s, holder.description = before
                if had_handler != holder.has_release_handler:
                    # In one step (under every zone's lock, core.commits): a failed
                    # commit is rare, and a handler taken back must be marked at once.
                    holder.no_handler_mark = not holder.has_release_handler
                    for zh in self.zones:
                        zh.mark_handler(holder, holder.has_release_handler)
                if (holder.lease_ttl_s, holder.on_expiry) != lease_before:
                    holder.on_expiry = lease_before[1]
                    self.leases.start(holder, lease_before[0])

            updated = [holder_event(EventType.HOLDER_UPDATED, name)]
            pending = self.submit([holder_op(holder)], undo, updated)
            if gains:
                # Stops at once if a failed commit took the handler back meanwhile.
                await remark(self.zones, holder, has_handler=True)
            await self.durable(pending)
        return holder

    def check_enrolled(self, holder: Holder) -> None:
        """Refuse ``holder`` if it was removed while its caller waited for a lock."""
        if self.holders.get(holder.name) is not holder:
            raise HolderNotFound(f"no holder named {holder.name!r}", holder=holder.name)

    async def remove_holder(self, name: str, *, force: bool = False) -> int:
        """Remove a holder; with ``force`` drop its holds too. Returns the holds dropped.
        Cost: O(zones); with ``force``, O(its holds) more in slices (``sweeps.py``).

        Every zone is write-locked for a moment, with no work under the locks: no set-hold
        or batch of the holder is half-way, it is dropped and the removal journaled (one
        revision), and from then on no hold can start for it. Its holds are then erased
        zone by zone, one slice under one zone's lock at a time. Until the sweep reaches
        them readers still see them (a holder unsetting its holds one by one would look
        the same), held by a holder that is gone; pages the sweep freed may be held by
        others at once (their change follows the removal in the journal too)."""
        holder = self.holder(name)
        async with self._holder_locks.one_at_a_time(holder):
            async with all_zones_written(self.zones):
                self.check_enrolled(holder)
                if holder.holds and not force:
                    raise HolderHasHolds(
                        f"holder {name!r} still holds {holder.holds} hold(s) "
                        f"({holder.held_pages} pages)",
                        holder=name,
                        holds=holder.holds,
                    )
                ttl_s = holder.lease_ttl_s
                self._drop(holder)
                erased = Erased()

                def undo() -> None:
                    erased.taken_back = True  # the sweep stops at its next slice
                    if holder.name in self.holders:
                        return  # registered again meanwhile: that one wins
                    self.enrol(holder)
                    self.leases.start(holder, ttl_s)
                    for zh, hold in erased.holds(holder):
                        self.restore(zh, hold)

                deleted = [holder_event(EventType.HOLDER_DELETED, name)]
                pending = self.submit([unholder_op(holder)], undo, deleted)
                if pending is not None:
                    self._removing.add(holder)
                    pending.add_done_callback(lambda _: self._removing.discard(holder))
            if holder.holds:
                # Shielded: a caller going away must not leave holds of a holder that is
                # gone in the trees.
                sweeping = asyncio.ensure_future(erase_all(self.zones, holder, erased))
                self._sweeps.add(sweeping)
                sweeping.add_done_callback(self._sweeps.discard)
                await asyncio.shield(sweeping)
            await self.durable(pending)
        return erased.count

    # -- placing a hold ----------------------------------------------------------------

    def zone_holds(self, pfn: int) -> ZoneHolds:
        if pfn < 0:
            raise InvalidRequest(f"pfn {pfn} is negative", field="pfn")
        zone = self.layout.zone_of(pfn)
        if zone is None:
            raise PfnNotFound(f"pfn {pfn} is in no zone of this machine", pfn=pfn)
        return self.zones[zone.index]

    def place(self, pfn: int, order: int) -> ZoneHolds:
        """The zone a hold of ``order`` at ``pfn`` belongs to, or the reason it can't be."""
        if not 0 <= order <= MAX_ORDER:
            raise InvalidRequest(f"order {order} is outside 0..{MAX_ORDER}", field="order")
        if pfn & ((1 << order) - 1):
            raise Misaligned(
                f"pfn {pfn} is not aligned to order {order} ({1 << order} pages)",
                pfn=pfn,
                order=order,
            )
        zh = self.zone_holds(pfn)
        end = pfn + (1 << order)
        if end > zh.zone.end_pfn:
            raise CrossesZone(
                f"order-{order} hold at pfn {pfn} ends at {end}, past zone {zh.zone.id} "
                f"(ends at {zh.zone.end_pfn})",
                pfn=pfn,
                order=order,
                zone=zh.zone.id,
            )
        return zh

    def advance_stamp(self, stamp: int) -> None:
        """Never hand out a stamp at or below ``stamp`` (one recovered from the store)."""
        self._last_stamp = max(self._last_stamp, stamp)

    def new_stamp(self) -> int:
        """A fresh ``since`` in microseconds, strictly increasing: a hold's generation."""
        stamp = max(int(self._clock() * 1_000_000), self._last_stamp + 1)
        self._last_stamp = stamp
        return stamp

    @staticmethod
    def authorize(actor: Actor, holder: Holder, action: str) -> None:
        if actor is not ADMIN and actor != holder.name:
            raise Forbidden(f"{actor!r} may not {action} for holder {holder.name!r}")

    async def set_hold(
        self,
        pfn: int,
        holder_name: str,
        *,
        order: int = 0,
        overwrite: bool = False,
        actor: Actor = ADMIN,
    ) -> SetResult:
        """Hold ``[pfn, pfn + 2**order)`` for a holder (the RFC's ``page_set_hold``)."""
        zh = self.place(pfn, order)
        holder = self.holder(holder_name)
        self.authorize(actor, holder, "hold pages")
        async with zh.lock.writer_lock:
            self.check_enrolled(holder)  # removed while we waited for the lock?
            self.leases.check_may_hold(holder)
            result = self.apply_set(zh, pfn, order, holder, overwrite, actor, self.new_stamp())
            pending = self.submit(
                set_ops(result), lambda: self.undo_set(zh, result), set_events(result)
            )
        # The lock is free while the journal commits: concurrent changes share commits.
        await self.durable(pending)
        return result

    def apply_set(
        self,
        zh: ZoneHolds,
        pfn: int,
        order: int,
        holder: Holder,
        overwrite: bool,
        actor: Actor,
        stamp: int,
    ) -> SetResult:
        """The body of ``set_hold`` for a placed, authorized hold; under the write lock.
        Cost: O(height), or O(height + replaced entries) on overlap."""
        if self.try_create(zh, pfn, order, holder, stamp):
            hold = Hold(pfn, order, holder, HoldState.HELD, stamp)
            return SetResult(SetStatus.CREATED, hold, [])
        overlapping = list(zh.tree.items(pfn, pfn + (1 << order)))
        return self._replace(zh, overlapping, pfn, order, holder, overwrite, actor, stamp)

    def try_create(self, zh: ZoneHolds, pfn: int, order: int, holder: Holder, stamp: int) -> bool:
        """Create the hold if nothing overlaps it (True); under the write lock. Batches
        call it first: the common case then allocates no result objects. Cost: O(height).
        """
        self.blocks.check_online(pfn, pfn + (1 << order))
        return zh.insert(pfn, order, holder, stamp)

    def undo_create(self, zh: ZoneHolds, pfn: int, holder: Holder, stamp: int) -> None:
        """Take back a ``try_create`` (generation-checked, like ``undo_set``)."""
        zh.erase_generation(pfn, stamp, holder)

    def undo_set(self, zh: ZoneHolds, result: SetResult) -> None:
        """Take back what ``apply_set`` did (an atomic batch failing further on, or a
        failed commit). Only the same generation is erased; replaced holds come back
        where their pages are still free."""
        if result.status is SetStatus.UNCHANGED:
            return
        hold = result.hold
        if not zh.erase_generation(hold.pfn, hold.since_us, hold.holder):
            return
        for previous in result.previous:
            self.restore(zh, previous)

    def restore(self, zh: ZoneHolds, hold: Hold) -> None:
        """Put a hold back as ``held`` if its pages are free and its holder still exists,
        or is being removed by a removal not committed yet. That removal is then being
        undone too, later in the same unwind (newest first): a hold another change took
        from the doomed holder while the removal's sweep ran (an offline's settle, an
        unset) must be back by then, or the holder comes back without it."""
        if self.holders.get(hold.holder.name) is hold.holder or hold.holder in self._removing:
            zh.restore(hold)

    def _replace(
        self,
        zh: ZoneHolds,
        overlapping: list[Entry],
        pfn: int,
        order: int,
        holder: Holder,
        overwrite: bool,
        actor: Actor,
        stamp: int,
    ) -> SetResult:
        tree = zh.tree
        end = pfn + (1 << order)
        busy = next(tree.marked(RELEASING, pfn, end), None)
        if busy is not None:
            raise PageReleasing(
                f"pfn {busy.head} (order {busy.order}) is being released",
                head_pfn=busy.head,
                order=busy.order,
            )
        first = overlapping[0]
        if len(overlapping) == 1 and (first.head, first.order, first.value) == (pfn, order, holder):
            return SetResult(SetStatus.UNCHANGED, zh.snapshot(first), [])
        current = first.value
        assert isinstance(current, Holder)
        if not overwrite:
            raise PageHeld(
                f"pfn {first.head} (order {first.order}) is held by {current.name!r}",
                holder=current.name,
                head_pfn=first.head,
                order=first.order,
            )
        if actor is not ADMIN and any(e.value is not holder for e in overlapping):
            raise Forbidden("only the admin may overwrite another holder's hold")
        previous = [zh.snapshot(e) for e in overlapping]
        zh.replace(pfn, order, holder, stamp)
        hold = Hold(pfn, order, holder, HoldState.HELD, stamp)
        return SetResult(SetStatus.OVERWRITTEN, hold, previous)

    async def unset_hold(self, pfn: int, *, actor: Actor = ADMIN) -> Hold:
        """Drop the hold whose head is ``pfn`` (the RFC's ``page_unset_hold``)."""
        zh = self.zone_holds(pfn)
        async with zh.lock.writer_lock:
            hold = self.apply_unset(zh, pfn, actor)
            pending = self.submit(
                unhold_ops([hold]),
                lambda: self.restore(zh, hold),
                released_events([hold], unset=True),
            )
        await self.durable(pending)
        return hold

    def apply_unset(self, zh: ZoneHolds, pfn: int, actor: Actor) -> Hold:
        """The body of ``unset_hold``; under the write lock. Cost: O(height)."""
        tree = zh.tree
        entry = tree.load(pfn)
        if entry is None:
            raise PageNotHeld(f"pfn {pfn} is not held", pfn=pfn)
        hold = zh.snapshot(entry)
        if entry.head != pfn:
            raise NotHead(
                f"pfn {pfn} is inside the order-{entry.order} hold at pfn {entry.head}; "
                "unset its head",
                head_pfn=entry.head,
                order=entry.order,
                holder=hold.holder.name,
            )
        self.authorize(actor, hold.holder, "unset holds")
        if hold.state is HoldState.RELEASING:
            raise PageReleasing(f"pfn {pfn} is being released", head_pfn=pfn, order=entry.order)
        zh.erase(entry)
        return hold

    def undo_unset(self, zh: ZoneHolds, hold: Hold) -> None:
        self.restore(zh, hold)

    # -- reading -------------------------------------------------------------------------

    async def lookup(self, pfn: int) -> PageInfo:
        """Who holds ``pfn`` (the RFC's ``page_owner``). Cost: O(height) under the read lock."""
        zh = self.zone_holds(pfn)
        async with zh.lock.reader_lock:
            entry = zh.tree.load(pfn)
            hold = None if entry is None else zh.snapshot(entry)
        return PageInfo(pfn, zh.zone, self.layout.block_id(pfn), hold)

    async def holds_in(
        self,
        start: int,
        end: int | None,
        *,
        holder: Holder | None = None,
        state: HoldState | None = None,
        limit: int = 100,
        resume: bool = False,
    ) -> tuple[list[Hold], int | None]:
        """Holds intersecting ``[start, end)`` in ascending order, at most ``limit``, and
        the pfn to resume from (None at the end). With ``resume``, a hold whose head is
        below ``start`` was listed already and is skipped: every hold that exists for the
        whole listing is listed exactly once; ``state`` keeps only holds in that state.
        Cost: O(height + entries visited)."""
        found: list[Hold] = []
        for zh in self.zones:
            zone = zh.zone
            lo, hi = (
                max(start, zone.start_pfn),
                zone.end_pfn if end is None else min(end, zone.end_pfn),
            )
            if lo >= hi:
                continue
            async with zh.lock.reader_lock:
                for entry in zh.tree.items(lo, hi):
                    if (resume and entry.head < start) or (
                        holder is not None and entry.value is not holder
                    ):
                        continue
                    hold = zh.snapshot(entry)
                    if state is not None and hold.state is not state:
                        continue
                    if len(found) == limit:
                        return found, entry.head
                    found.append(hold)
        return found, None

    def block_state(self, block: int) -> BlockState:
        return self.blocks.state(block)

    def block_usage(self, block: MemoryBlock) -> BlockUsage:
        """Held pages, holds and removability of a block from the trees' aggregate counts
        and the NO_HANDLER mark. Cost: O(height) per zone the block intersects."""
        held_pages = holds = orphaned = 0
        removable = True
        start, end = block.start_pfn, block.end_pfn
        expired = set(self.leases.expired_holders()) if self.leases.leased else set()
        for zone in block.zones:
            tree = self.zones[zone.index].tree
            held_pages += tree.count_pages(start, end)
            holds += tree.count_entries(start, end)
            removable = removable and not self.zones[zone.index].lacks_handler(start, end)
            if expired:  # O(entries of the block), only while some holder is expired
                orphaned += sum(
                    min(end, e.head + (1 << e.order)) - max(start, e.head)
                    for e in tree.items(start, end)
                    if e.value in expired
                )
        return BlockUsage(
            block, self.block_state(block.id), held_pages, holds, removable, orphaned
        )

    def zone_orphaned_pages(self, zh: ZoneHolds) -> int:
        """Pages of ``zh`` held by expired holders. Cost: O(leased holders)."""
        if not self.leases.leased:
            return 0
        return sum(zh.pages_of.get(h, 0) for h in self.leases.expired_holders())

    # -- release -------------------------------------------------------------------------

    async def release(self, pfn: int) -> Released:
        """Ask the holder of ``pfn`` to release its hold (the RFC's ``page_release``).

        Concurrent releases of one hold share one handler call and its result.
        """
        zh = self.zone_holds(pfn)
        tree = zh.tree
        async with zh.lock.writer_lock:
            entry = tree.load(pfn)
            if entry is None:
                raise PageNotHeld(f"pfn {pfn} is not held", pfn=pfn)
            key = (zh.zone.index, entry.head, entry.stamp)
            task = self._releases.get(key)
            if task is None:
                holder = entry.value
                assert isinstance(holder, Holder)
                if tree.get_mark(entry.head, RELEASING) or self.blocks.offlining(
                    entry.head, entry.head + (1 << entry.order)
                ):  # (an offline marks its block's holds slice by slice: all are its)
                    raise PageReleasing(
                        f"pfn {entry.head} is being released by an offline",
                        head_pfn=entry.head,
                        order=entry.order,
                    )
                if not holder.has_release_handler:
                    raise NoReleaseHandler(
                        f"pfn {entry.head} is held by {holder.name!r}, "
                        "which has no page_release handler",
                        holder=holder.name,
                        head_pfn=entry.head,
                        order=entry.order,
                    )
                tree.set_mark(entry.head, RELEASING)
                task = asyncio.create_task(self._release_one(zh, entry))
                self._releases[key] = task
                task.add_done_callback(self._forget_release(key))
        # The lock is dropped here: the handler may take seconds and lookups and holds in
        # this zone must go on meanwhile. shield(): one caller giving up (a client
        # disconnect) must not cancel the call the others are waiting for.
        return await asyncio.shield(task)

    def release_in_flight(self, zh: ZoneHolds, entry: Entry) -> asyncio.Task[Released] | None:
        """The single-page release running for the hold ``entry`` is, if any."""
        return self._releases.get((zh.zone.index, entry.head, entry.stamp))

    def _forget_release(
        self, key: tuple[int, int, int]
    ) -> Callable[[asyncio.Task[Released]], None]:
        def forget(task: asyncio.Task[Released]) -> None:
            if self._releases.get(key) is task:
                del self._releases[key]
            if not task.cancelled():
                task.exception()  # retrieved: nobody may be left waiting for it

        return forget

    async def _release_one(self, zh: ZoneHolds, entry: Entry) -> Released:
        holder = entry.value
        assert isinstance(holder, Holder)
        ref = PageRef(entry.head, entry.order)
        answer: ReleaseAnswer | None = None
        try:
            answer = await self.call_holder(holder, [ref], reason="release", block=None)
        finally:
            # Also on cancellation (shutdown): then answer is None and the hold goes back
            # to held, as after any failure.
            async with zh.lock.writer_lock:
                released = answer is not None and ref.pfn in answer.released
                failure = None if answer is None else answer.failed.get(ref.pfn)
                erased = zh.settle(entry, released, failure and failure.detail)
                held = Hold(ref.pfn, ref.order, holder, HoldState.HELD, entry.stamp)
                pending = self.journal_erased(zh, [held] if erased else [])
        await self.durable(pending)
        hold = Hold(ref.pfn, ref.order, holder, HoldState.RELEASING, entry.stamp)
        if failure is None:
            assert answer is not None
            return Released(hold, answer.calls)
        extra = {"holder": holder.name, "head_pfn": ref.pfn, "order": ref.order}
        if failure.reason is FailureReason.RELEASE_TIMEOUT:
            raise ReleaseTimeout(f"holder {holder.name!r}: {failure.detail}", **extra)
        raise ReleaseFailed(f"holder {holder.name!r}: {failure.detail}", **extra)

    async def call_holder(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        timeout_s: float | None = None,
        timeout_reason: FailureReason = FailureReason.RELEASE_TIMEOUT,
    ) -> ReleaseAnswer:
        """Run the release caller for ``pages`` under a timeout (the holder's, or
        ``timeout_s``, failing with ``timeout_reason``); never raises for the holder's
        behaviour. Takes no lock.

        An expired holder (an orphaned hold) is still asked, it may only be cut off; but
        for at most ``ORPHAN_CALL_TIMEOUT_S``, and if it fails, the reason is
        ``lease_expired``."""
        limit = holder.timeout_s if timeout_s is None else timeout_s
        if holder.expired:
            limit = min(limit, ORPHAN_CALL_TIMEOUT_S)
        answer = await self._call_holder(holder, pages, reason, block, limit, timeout_reason)
        if answer.failed and holder.expired:
            answer.failed = {
                pfn: PageFailure(
                    FailureReason.LEASE_EXPIRED, f"the holder's lease expired; {why.detail}"
                )
                for pfn, why in answer.failed.items()
            }
        return answer

    async def _call_holder(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        reason: str,
        block: int | None,
        limit: float,
        timeout_reason: FailureReason,
    ) -> ReleaseAnswer:
        deadline = self._clock() + limit
        try:
            async with asyncio.timeout(limit):
                answer = await self._caller(
                    holder, pages, reason=reason, block=block, deadline=deadline
                )
        except TimeoutError:
            return ReleaseAnswer.all_failed(pages, timeout_reason, f"no answer within {limit:g} s")
        except Exception as exc:  # a broken handler is a failed release, not our crash
            return ReleaseAnswer.all_failed(
                pages, FailureReason.RELEASE_FAILED, f"{type(exc).__name__}: {exc}"
            )
        return answer.normalized(pages)

    def journal_erased(
        self,
        zh: ZoneHolds,
        erased: list[Hold],
        more_ops: Sequence[Op] = (),
        undo_more: Callable[[], None] | None = None,
        more_events: Sequence[EventBody] = (),
        reclaimed: Sequence[Hold] = (),
    ) -> asyncio.Future[None] | None:
        """Journal holds a settle erased (``hold.released``), holds of an expired holder
        erased without asking it (``reclaimed``: ``hold.reclaimed``), and ``more_ops``
        with ``more_events``, as one revision; a failed commit puts them back as held.
        Call under the zone's write lock, like every ``submit``."""
        gone = [*erased, *reclaimed]

        def undo() -> None:
            if undo_more is not None:
                undo_more()
            for hold in gone:
                self.restore(zh, hold)

        events = released_events(erased) + reclaimed_events(reclaimed) + list(more_events)
        return self.submit(unhold_ops(gone) + list(more_ops), undo, events)


def set_events(result: SetResult) -> list[EventBody]:
    """What a set-hold tells watchers: ``hold.created`` or ``hold.overwritten`` (with the
    holders it took pages from); nothing when it changed nothing."""
    if result.status is SetStatus.UNCHANGED:
        return []
    hold = result.hold
    if result.status is SetStatus.CREATED:
        return [EventBody(EventType.HOLD_CREATED, hold.holder.name, ((hold.pfn, hold.order),))]
    previous = tuple(dict.fromkeys(h.holder.name for h in result.previous))
    return [
        EventBody(
            EventType.HOLD_OVERWRITTEN,
            hold.holder.name,
            ((hold.pfn, hold.order),),
            previous=previous,
        )
    ]


def reclaimed_events(holds: Sequence[Hold]) -> list[EventBody]:
    """``hold.reclaimed`` for holds of expired holders, one body per holder."""
    return hold_events(EventType.HOLD_RECLAIMED, ((h.holder.name, h.pfn, h.order) for h in holds))


def released_events(holds: Sequence[Hold], *, unset: bool = False) -> list[EventBody]:
    """``hold.released`` (or ``hold.unset``) for ``holds``, one body per holder."""
    kind = EventType.HOLD_UNSET if unset else EventType.HOLD_RELEASED
    return hold_events(kind, ((h.holder.name, h.pfn, h.order) for h in holds))
