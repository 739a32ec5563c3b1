"""The PostgreSQL store's own parts: its schema, the leader lease and the fence that
keeps a deposed leader's late write out."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.journal import HolderOp, HoldOp
from pageholder.service.storage.errors import StoreError
from pageholder.service.storage.leader import LeaderLease
from pageholder.service.storage.postgres import SCHEMA_VERSION, Fence, PgStore

from ..postgres import PostgresServer


def holder(name: str) -> HolderOp:
    return HolderOp(name, None, 10.0, "", 1.0, "h-" + name, "whsec_x")


def test_a_new_database_gets_the_current_schema_and_a_newer_one_is_refused(pg_url: str) -> None:
    PgStore.open(pg_url).close_now()
    with psycopg.connect(pg_url, autocommit=True) as db:
        assert db.execute("SELECT version FROM pageholder_schema").fetchall() == [(SCHEMA_VERSION,)]
        db.execute("UPDATE pageholder_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this pageholder"):
        PgStore.open(pg_url)


def test_an_unreachable_server_is_one_line(postgres: PostgresServer) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{postgres.port + 1}/x"  # nothing listens there
    with pytest.raises(StoreError, match="cannot connect") as refused:
        PgStore.open(dead)
    assert "\n" not in str(refused.value)


def test_one_leader_at_a_time_and_the_epoch_grows_on_takeover(pg_url: str) -> None:
    PgStore.open(pg_url).close_now()
    first = LeaderLease(pg_url, "first", "http://a", ttl_s=0.5)
    second = LeaderLease(pg_url, "second", "http://b", ttl_s=0.5)
    epoch = first.acquire()
    assert epoch == 1
    assert second.acquire() is None  # the lease runs
    assert second.leader() == "http://a"
    assert first.renew(epoch)
    deadline = time.monotonic() + 10
    taken = None
    while taken is None and time.monotonic() < deadline:  # first stops renewing
        taken = second.acquire()
        time.sleep(0.1)
    assert taken == 2
    assert not first.renew(epoch)  # deposed: it cannot renew its old epoch
    second.release(taken)
    assert first.acquire() == 3  # released: taken at once
    for lease in (first, second):
        lease.close()


async def test_a_deposed_leaders_write_fails_and_lands_nothing(pg_url: str) -> None:
    old = PgStore.open(pg_url)
    lost: list[str] = []
    old.on_lost = lost.append
    lease = LeaderLease(pg_url, "old", None, ttl_s=0.5)
    epoch = lease.acquire()
    assert epoch is not None
    old.fence = Fence(epoch, "old")
    old.start()
    await old.submit([holder("nic0")])
    # Another registry takes over once the lease ran out (the old one was paused).
    usurper = LeaderLease(pg_url, "new", None, ttl_s=30)
    deadline = time.monotonic() + 10
    while usurper.acquire() is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    late = old.submit([HoldOp(5, 0, "nic0", 1)])
    with pytest.raises(StorageUnavailable, match="lease"):
        await late
    assert lost == ["the leader lease is gone"]
    await old.close()
    fresh = PgStore.open(pg_url)
    assert list(fresh.hold_runs()) == []  # the late write did not land
    assert [h[0] for h in fresh.holders()] == ["nic0"]
    fresh.close_now()
    for each in (lease, usurper):
        each.close()
