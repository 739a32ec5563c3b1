"""A standby follows the leader's commits: its memory equals a fresh load of the store.

The story: a live registry journals to PostgreSQL; a standby registry loaded the store
when it was empty and catches up now and then (``Follower.catch_up``) while the live one
builds holds of every kind, overwrites, unsets, changes holders (a handler that comes
and goes, a lease), deletes a holder with its holds and registers one of the same name
again, takes a block offline and back. After every catch-up the standby equals a
registry recovered from scratch, tree for tree and holder for holder, and its events
are the store's. Last: a standby that fell behind the retention cannot follow.
"""

from __future__ import annotations

import pytest

from pageholder.service.core.batch import batch_set, batch_unset
from pageholder.service.core.bulk import batch_set_ranges
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.offline import offline_block, online_block
from pageholder.service.core.registry import Registry
from pageholder.service.storage.changes import CannotFollow, merge, touched
from pageholder.service.storage.follower import Follower
from pageholder.service.storage.postgres import PgStore
from pageholder.service.storage.recovery import recover

from .test_recovery import DMA, DMA32, NORMAL, no_caller, picture


def everything(reg: Registry) -> dict[str, object]:
    """``picture`` and what it leaves out: every holder field, the revisions kept."""
    holders = {
        h.name: (h.description, h.webhook_secret, h.created, h.lease_ttl_s, h.on_expiry)
        for h in reg.holders.values()
    }
    tokens = {h.token_hash: h.name for h in reg.holders.values() if h.token_hash}
    assert all(reg.holder_by_token_hash(t) is reg.holders[n] for t, n in tokens.items())
    return {**picture(reg), "more": holders, "rev": reg.events.revision}


def loaded(url: str, layout: MemoryLayout) -> Registry:
    store = PgStore.open(url)
    reg = Registry(layout, no_caller, journal=store)
    try:
        recover(reg, store)
    finally:
        store.close_now()
    return reg


async def test_a_following_standby_equals_a_fresh_load(pg_url: str) -> None:
    layout = MemoryLayout.default()
    store = PgStore.open(pg_url)
    live = Registry(layout, no_caller, journal=store)
    recover(live, store)
    store.start()
    standby = loaded(pg_url, layout)
    follower = Follower(pg_url, standby, standby.events.revision)

    def caught_up() -> None:
        applied = follower.catch_up()
        assert applied and follower.last == live.events.revision
        fresh = loaded(pg_url, layout)
        assert everything(standby) == everything(fresh) == everything(live)
        assert [kept[0] for kept in standby.events._recent] == list(range(1, follower.last + 1))

    try:
        await live.add_holder("nic0", release_url="http://127.0.0.1:9/r", token_hash="t1")
        await live.add_holder("balloon", token_hash="t2", lease_ttl_s=30)
        await live.add_holder("gpu0", release_url="http://127.0.0.1:9/g", timeout_s=2.5)
        await batch_set_ranges(live, "balloon", [], [(DMA32, 30_000), (NORMAL - 3000, 9000)])
        await batch_set(live, "gpu0", [(NORMAL + 200_000 + 64 * i, 6) for i in range(100)])
        for order in range(17):
            await live.set_hold((1 << 21) + (order << 16), "gpu0", order=order)
        caught_up()
        await live.set_hold(DMA + 1, "nic0")
        for pfn in (DMA32 + 5, DMA32 + 4095, NORMAL + 200_000 + 64):
            await live.unset_hold(pfn)
        await batch_unset(live, [(NORMAL - 3000 + i, 0) for i in range(0, 9000, 7)])
        await live.set_hold(DMA32 + 64, "gpu0", order=6, overwrite=True)  # over a run
        await live.set_hold((1 << 21) + (16 << 16) + 4096, "nic0", order=12, overwrite=True)
        await live.update_holder("gpu0", release_url=None, description="no handler now")
        await live.update_holder("balloon", lease_ttl_s=None)
        await offline_block(live, 100)
        caught_up()
        await live.remove_holder("balloon", force=True)  # its holds go with it
        await live.add_holder("balloon", release_url="http://127.0.0.1:9/b", token_hash="t3")
        await batch_set_ranges(live, "balloon", [], [(DMA32 + 100_000, 5000)])
        await live.update_holder("gpu0", release_url="http://127.0.0.1:9/g2")
        await online_block(live, 100)
        await live.set_hold(100 * 32768, "nic0")
        caught_up()
        assert follower.catch_up() == 0  # nothing new: nothing applied
    finally:
        follower.close()
        await store.close()


def test_what_revisions_touched() -> None:
    assert merge([(10, 12), (0, 4), (4, 8), (11, 20), (30, 31)]) == [(0, 8), (10, 20), (30, 31)]
    assert touched([]).ranges == []


async def test_a_standby_behind_the_retention_cannot_follow(pg_url: str) -> None:
    layout = MemoryLayout.default()
    store = PgStore.open(pg_url)
    live = Registry(layout, no_caller, journal=store)
    recover(live, store)
    store.retention = 10
    store.start()
    standby = loaded(pg_url, layout)
    follower = Follower(pg_url, standby, standby.events.revision)
    try:
        await live.add_holder("nic0")
        for n in range(40):
            await live.set_hold(NORMAL + n, "nic0")
        await store.close()  # compacted after the last commits
        with pytest.raises(CannotFollow, match="revision 1 is no longer kept"):
            follower.catch_up()
    finally:
        follower.close()
