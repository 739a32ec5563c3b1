"""Holder leases in the core: every rule, then the races.

A ``FakeClock`` is the registry's monotonic clock: tests move it and call
``leases.poll(holder)`` where the real timer would fire. One test runs on the real clock
to prove the timer itself fires.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from pageholder.service.core import collector, errors
from pageholder.service.core.batch import batch_set
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import FailureReason, Holder, HoldState, OnExpiry
from pageholder.service.core.offline import offline_block
from pageholder.service.core.registry import UNSET, Registry
from pageholder.service.core.rules import ORPHAN_CALL_TIMEOUT_S
from tests.core.test_registry import NORMAL, Handler

DMA32 = 4096
TTL = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def leased(
    handler: Handler | None = None, on_expiry: OnExpiry = OnExpiry.KEEP
) -> tuple[Registry, FakeClock, Holder]:
    clock = FakeClock()
    registry = Registry(MemoryLayout.default(), handler or Handler(), monotonic=clock)
    holder = await registry.add_holder(
        "nic0",
        release_url="http://127.0.0.1:9/release",
        timeout_s=10,
        lease_ttl_s=TTL,
        on_expiry=on_expiry,
    )
    return registry, clock, holder


async def state_of(registry: Registry, pfn: int) -> HoldState | None:
    hold = (await registry.lookup(pfn)).hold
    return None if hold is None else hold.state


async def test_lease_settings_are_checked() -> None:
    registry, _, holder = await leased()
    for bad in (0.5, 3601):
        with pytest.raises(errors.InvalidRequest):
            await registry.add_holder("gpu0", lease_ttl_s=bad)
        with pytest.raises(errors.InvalidRequest):
            await registry.update_holder("nic0", lease_ttl_s=bad)
    assert holder.lease_ttl_s == TTL and "gpu0" not in registry.holders
    trusted = await registry.add_holder("gpu0")
    assert trusted.lease is None and not trusted.expired


async def test_expiry_is_seen_by_readers_the_moment_it_happens() -> None:
    registry, clock, holder = await leased()
    await registry.add_holder("gpu0")
    await registry.set_hold(NORMAL, "nic0", order=9)
    await registry.set_hold(DMA32, "nic0")
    await registry.set_hold(NORMAL + 512, "gpu0")
    clock.now += TTL  # exactly at the deadline: still live (expired is now > expires_at)
    assert await state_of(registry, NORMAL) is HoldState.HELD
    assert registry.leases.expired_holders() == []
    clock.now += 0.001  # a millisecond later, no timer has run: already orphaned
    assert await state_of(registry, NORMAL + 3) is HoldState.ORPHANED
    assert await state_of(registry, NORMAL + 512) is HoldState.HELD  # gpu0 has no lease
    orphaned, _ = await registry.holds_in(0, None, state=HoldState.ORPHANED)
    assert [(h.pfn, h.holder.name) for h in orphaned] == [(DMA32, "nic0"), (NORMAL, "nic0")]
    held, _ = await registry.holds_in(0, None, state=HoldState.HELD)
    assert [h.pfn for h in held] == [NORMAL + 512]
    block = registry.layout.block(32)
    assert block is not None
    usage = registry.block_usage(block)
    assert (usage.held_pages, usage.orphaned_pages) == (513, 512)
    normal, dma32 = registry.zones[2], registry.zones[1]
    assert registry.zone_orphaned_pages(normal) == 512
    assert registry.zone_orphaned_pages(dma32) == 1
    assert holder.lease is not None and not holder.lease.noted  # derived, nothing swept


async def test_an_expired_holder_starts_no_hold_but_may_give_back() -> None:
    registry, clock, _ = await leased()
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL + 1
    with pytest.raises(errors.LeaseExpired):
        await registry.set_hold(NORMAL + 1, "nic0")
    with pytest.raises(errors.LeaseExpired):
        await registry.set_hold(NORMAL, "nic0")  # not even an unchanged re-hold
    for atomic in (False, True):
        with pytest.raises(errors.LeaseExpired):
            await batch_set(registry, "nic0", [(NORMAL + 8, 0), (NORMAL + 9, 0)], atomic=atomic)
    assert await state_of(registry, NORMAL + 8) is None
    await registry.unset_hold(NORMAL)  # giving pages back is always fine
    assert registry.holder("nic0").holds == 0


async def test_a_keepalive_renews_and_revives() -> None:
    registry, clock, holder = await leased()
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL - 1
    lease = registry.leases.keepalive(holder)
    assert lease.deadline == clock.now + TTL
    clock.now += TTL + 0.5
    assert await state_of(registry, NORMAL) is HoldState.ORPHANED
    registry.leases.keepalive(holder)
    assert await state_of(registry, NORMAL) is HoldState.HELD
    stats = registry.leases.stats
    assert (stats.expirations, stats.revivals) == (1, 1)
    await registry.set_hold(NORMAL + 1, "nic0")  # may hold again
    trusted = await registry.add_holder("gpu0")
    with pytest.raises(errors.NoLease):
        registry.leases.keepalive(trusted)


async def test_a_keepalive_arriving_as_the_lease_expires() -> None:
    registry, clock, holder = await leased(on_expiry=OnExpiry.RECLAIM)
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL  # the keepalive lands exactly at the deadline: in time
    registry.leases.keepalive(holder)
    registry.leases.poll(holder)  # the timer of the old deadline fires just after
    assert registry.leases.reclaim_task(holder) is None
    assert (registry.leases.stats.expirations, registry.leases.stats.revivals) == (0, 0)
    assert await state_of(registry, NORMAL) is HoldState.HELD
    # One microsecond late, before the timer ran: expired and revived, both counted once,
    # and nothing reclaimed (the revival came first).
    clock.now += TTL + 1e-6
    registry.leases.keepalive(holder)
    registry.leases.poll(holder)
    assert (registry.leases.stats.expirations, registry.leases.stats.revivals) == (1, 1)
    assert registry.leases.reclaim_task(holder) is None
    assert await state_of(registry, NORMAL) is HoldState.HELD


async def test_the_admin_reclaims_only_an_expired_holders_holds() -> None:
    registry, clock, holder = await leased()
    await registry.add_holder("gpu0")
    with pytest.raises(errors.LeaseNotExpired):
        await registry.leases.reclaim_now(holder)
    with pytest.raises(errors.LeaseNotExpired):
        await registry.leases.reclaim_now(registry.holder("gpu0"))  # no lease: never
    await registry.set_hold(NORMAL, "nic0", order=9)
    await registry.set_hold(DMA32, "nic0", order=3)
    await registry.set_hold(NORMAL + 512, "gpu0")
    clock.now += TTL + 1
    done = await registry.leases.reclaim_now(holder)
    assert (done.holds, done.pages) == (2, 520)
    assert (holder.holds, holder.held_pages) == (0, 0)
    assert await state_of(registry, NORMAL + 512) is HoldState.HELD
    assert registry.zones[2].pages_of == {registry.holder("gpu0"): 1}
    stats = registry.leases.stats
    assert (stats.expirations, stats.reclaimed_holds, stats.reclaimed_pages) == (1, 2, 520)
    assert "nic0" in registry.holders  # the holder stays; it may come back
    for zh in registry.zones:
        zh.tree._check()


async def test_on_expiry_reclaim_erases_at_expiry() -> None:
    registry, clock, holder = await leased(on_expiry=OnExpiry.RECLAIM)
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(1000)])
    clock.now += TTL + 1
    registry.leases.poll(holder)
    task = registry.leases.reclaim_task(holder)
    assert task is not None
    assert (await task).holds == 1000
    assert holder.holds == 0 and registry.leases.stats.reclaimed_holds == 1000


async def test_the_timer_fires_on_the_real_clock() -> None:
    registry = Registry(MemoryLayout.default(), Handler())
    holder = await registry.add_holder("nic0", lease_ttl_s=1, on_expiry=OnExpiry.RECLAIM)
    await registry.set_hold(NORMAL, "nic0")
    started = time.monotonic()
    while holder.holds and time.monotonic() - started < 5:
        await asyncio.sleep(0.02)
    assert holder.holds == 0 and registry.leases.stats.expirations == 1
    assert 1.0 <= time.monotonic() - started < 5


async def test_reclaim_racing_a_revival_stops_at_the_next_slice() -> None:
    registry, clock, holder = await leased()
    await batch_set(registry, "nic0", [(NORMAL + 2 * i, 0) for i in range(5000)])
    registry.leases.slice_s = 0.0  # one scan step per slice: many slices
    clock.now += TTL + 1
    task = asyncio.create_task(registry.leases.reclaim_now(holder))
    for _ in range(1000):  # bounded: until the first slices went through
        await asyncio.sleep(0)
        if holder.holds < 5000:
            break
    assert 0 < holder.holds < 5000
    registry.leases.keepalive(holder)  # revived in the middle of the reclaim
    done = await task
    assert 0 < done.holds < 5000 and holder.holds == 5000 - done.holds
    remaining, _ = await registry.holds_in(0, None, holder=holder, limit=10000)
    assert len(remaining) == holder.holds
    assert {h.state for h in remaining} == {HoldState.HELD}


async def test_full_collections_wait_for_a_reclaim_young_ones_do_not() -> None:
    """Issue 14's stall: a full collection walks the tree the reclaim is erasing."""
    registry, clock, holder = await leased()
    await batch_set(registry, "nic0", [(NORMAL + 2 * i, 0) for i in range(5000)])
    registry.leases.slice_s = 0.0  # many slices, a look at the collector between them
    before = gc.get_threshold()
    clock.now += TTL + 1
    task = asyncio.create_task(registry.leases.reclaim_now(holder))
    seen: set[tuple[int, int, int]] = set()
    for _ in range(100_000):  # bounded: until the reclaim is done
        await asyncio.sleep(0)
        if task.done():
            break
        seen.add(gc.get_threshold())
    assert (await task).holds == 5000
    assert seen == {(before[0], before[1], collector.NEVER)}
    assert gc.get_threshold() == before  # back as it was


async def test_on_expiry_reclaim_racing_a_set_hold() -> None:
    registry, clock, holder = await leased(on_expiry=OnExpiry.RECLAIM)
    await registry.set_hold(NORMAL, "nic0")
    zh = registry.zones[2]
    await zh.lock.writer_lock.acquire()
    late = asyncio.create_task(registry.set_hold(NORMAL + 1, "nic0"))  # waits for the lock
    clock.now += TTL  # the set-hold asked in time ...
    await asyncio.sleep(0)
    clock.now += 0.001  # ... but gets the lock only after the expiry
    registry.leases.poll(holder)
    zh.lock.writer_lock.release()
    with pytest.raises(errors.LeaseExpired):
        await late
    task = registry.leases.reclaim_task(holder)
    assert task is not None and (await task).holds == 1
    assert holder.holds == 0 and len(zh.tree) == 0


async def test_expiry_while_a_release_is_in_flight() -> None:
    gate = asyncio.Event()
    handler = Handler("refuse", gate)
    registry, clock, holder = await leased(handler)
    await registry.set_hold(NORMAL, "nic0")
    release = asyncio.create_task(registry.release(NORMAL))
    while not handler.calls:
        await asyncio.sleep(0)
    assert await state_of(registry, NORMAL) is HoldState.RELEASING
    clock.now += TTL + 1  # expires while the handler runs
    assert await state_of(registry, NORMAL) is HoldState.RELEASING
    gate.set()
    with pytest.raises(errors.ReleaseFailed, match="lease expired"):
        await release
    assert await state_of(registry, NORMAL) is HoldState.ORPHANED  # back, not releasing
    # A handler that does answer releases an orphaned hold as usual.
    handler.answer = "ok"
    assert (await registry.release(NORMAL)).hold.pfn == NORMAL
    assert holder.holds == 0


async def test_a_reclaim_during_a_release_leaves_the_settle_nothing_to_do() -> None:
    gate = asyncio.Event()
    handler = Handler("refuse", gate)
    registry, clock, holder = await leased(handler, OnExpiry.RECLAIM)
    await registry.set_hold(NORMAL, "nic0")
    release = asyncio.create_task(registry.release(NORMAL))
    while not handler.calls:
        await asyncio.sleep(0)
    clock.now += TTL + 1
    registry.leases.poll(holder)
    task = registry.leases.reclaim_task(holder)
    assert task is not None and (await task).holds == 1
    gate.set()
    with pytest.raises(errors.ReleaseFailed):
        await release
    assert await state_of(registry, NORMAL) is None and holder.holds == 0
    registry.zones[2].tree._check()


async def test_an_offline_asks_an_orphan_briefly_and_says_lease_expired() -> None:
    registry, clock, _ = await leased(Handler("hang"))
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL + 1
    started = time.monotonic()
    with pytest.raises(errors.OfflineFailed) as failed:
        await offline_block(registry, 32, deadline_s=30)
    took = time.monotonic() - started
    assert ORPHAN_CALL_TIMEOUT_S <= took < ORPHAN_CALL_TIMEOUT_S + 2  # not timeout_s=10
    (failure,) = failed.value.extra["report"]["failures"]
    assert failure["reason"] == FailureReason.LEASE_EXPIRED.value
    assert await state_of(registry, NORMAL) is HoldState.ORPHANED


async def test_offline_reclaims_orphans_without_a_call() -> None:
    handler = Handler("ok")
    registry, clock, _ = await leased(handler)
    await registry.add_holder("gpu0", release_url="http://127.0.0.1:9/gpu", lease_ttl_s=3600)
    await registry.set_hold(NORMAL, "nic0", order=4)
    await registry.set_hold(NORMAL + 64, "gpu0")
    clock.now += TTL + 1  # nic0 expires; gpu0 (ttl 3600) does not
    report = await offline_block(registry, 32, reclaim_orphans=True)
    assert report.state == "offline"
    assert report.reclaimed == [{"holder": "nic0", "pfn": NORMAL, "order": 4}]
    assert (report.released_holds, report.released_pages) == (1, 1)
    assert [c[0] for c in handler.calls] == ["gpu0"]  # nic0 was not asked
    assert registry.leases.stats.reclaimed_pages == 16


async def test_patch_starts_changes_and_removes_a_lease() -> None:
    registry, clock, holder = await leased()
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL + 1
    assert await state_of(registry, NORMAL) is HoldState.ORPHANED
    await registry.update_holder("nic0", lease_ttl_s=60)  # setting one starts it live
    assert await state_of(registry, NORMAL) is HoldState.HELD
    assert holder.lease is not None and holder.lease.deadline == clock.now + 60
    await registry.update_holder("nic0", lease_ttl_s=None)
    clock.now += 10_000
    assert await state_of(registry, NORMAL) is HoldState.HELD
    assert holder not in registry.leases.leased
    await registry.update_holder("nic0", lease_ttl_s=5, on_expiry=OnExpiry.RECLAIM)
    await registry.update_holder("nic0", description="kept", lease_ttl_s=UNSET)
    assert (holder.lease_ttl_s, holder.on_expiry) == (5, OnExpiry.RECLAIM)


async def test_switching_an_expired_holder_to_reclaim_reclaims() -> None:
    registry, clock, holder = await leased()
    await registry.set_hold(NORMAL, "nic0")
    clock.now += TTL + 1
    registry.leases.poll(holder)  # noted, kept
    assert holder.holds == 1
    await registry.update_holder("nic0", on_expiry=OnExpiry.RECLAIM)
    task = registry.leases.reclaim_task(holder)
    assert task is not None and (await task).holds == 1


async def test_removing_a_holder_stops_its_lease() -> None:
    registry, clock, holder = await leased()
    await registry.remove_holder("nic0")
    assert holder not in registry.leases.leased and holder.lease is None
