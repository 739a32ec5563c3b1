"""Leases across a restart: settings persist, every lease restarts at now + ttl_s, and a
version-1 store is migrated (its holders get no lease)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import HoldState, OnExpiry
from pageholder.service.core.registry import Registry
from pageholder.service.storage.recovery import open_durable, recover
from pageholder.service.storage.sqlite import DB_FILE, MIGRATIONS, Store
from tests.core.test_leases import FakeClock
from tests.core.test_registry import NORMAL, Handler


async def test_a_restart_restarts_every_lease_at_now_plus_ttl(tmp_path: Path) -> None:
    layout = MemoryLayout.default()
    store = Store.open(tmp_path)
    store.start()
    clock = FakeClock()
    registry = Registry(layout, Handler(), monotonic=clock, journal=store)
    await registry.add_holder("nic0", lease_ttl_s=5, on_expiry=OnExpiry.RECLAIM)
    await registry.add_holder("gpu0", lease_ttl_s=30)
    await registry.add_holder("balloon")
    await registry.set_hold(NORMAL, "gpu0")
    clock.now += 31  # gpu0 expired before the "crash": its hold reads orphaned
    assert (await registry.lookup(NORMAL)).hold.state is HoldState.ORPHANED  # type: ignore[union-attr]
    await store.close()

    durable = open_durable(tmp_path, layout)
    later = FakeClock()
    later.now = 50_000.0  # the new process's monotonic clock has nothing to do with the old
    restarted = Registry(layout, Handler(), monotonic=later, journal=durable.store)
    recover(restarted, durable.store)
    durable.store.close_now()
    nic0, gpu0, balloon = (restarted.holder(n) for n in ("nic0", "gpu0", "balloon"))
    assert (nic0.lease_ttl_s, nic0.on_expiry) == (5, OnExpiry.RECLAIM)
    assert (gpu0.lease_ttl_s, gpu0.on_expiry) == (30, OnExpiry.KEEP)
    assert balloon.lease is None
    assert gpu0.lease is not None and gpu0.lease.deadline == later.now + 30
    # restart grace: the downtime expired nobody, gpu0's hold is held again
    assert (await restarted.lookup(NORMAL)).hold.state is HoldState.HELD  # type: ignore[union-attr]
    later.now += 30
    assert not gpu0.expired
    later.now += 0.001
    assert gpu0.expired


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.executescript(MIGRATIONS[1] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO holders VALUES ('nic0', NULL, 10.0, '', 1.0, 'h', 's')")
    db.commit()
    db.close()
    store = Store.open(tmp_path)
    (row,) = store.holders()
    store.close_now()
    assert row[-2:] == (None, "keep")
