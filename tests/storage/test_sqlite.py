"""The SQLite journal on its own: schema, group commit, failures."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.journal import BlockOp, HolderOp, HoldOp, UnblockOp, UnholdOp
from pageholder.service.storage.sqlite import DB_FILE, SCHEMA_VERSION, Store, StoreError

from .conftest import Opener


async def test_a_new_store_is_created_at_the_current_schema(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    assert (store.holders(), list(store.hold_runs()), store.block_states()) == ([], [], {})
    store.close_now()
    db = sqlite3.connect(tmp_path / "data" / DB_FILE)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # webhook secrets live in it: owner only
    assert (tmp_path / "data" / DB_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this pageholder"):
        Store.open(tmp_path)


def test_garbage_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError, match="not a usable pageholder database"):
        Store.open(tmp_path)


async def test_ops_round_trip_and_group_commit(open_store: Opener) -> None:
    store = open_store()
    store.start()
    await store.submit([HolderOp("nic0", None, 10.0, "", 1.0, "h", "whsec_x")])
    # 100 submissions at once: they are committed in far fewer transactions
    before = store.commits
    await asyncio.gather(
        *(store.submit([HoldOp(1000 + i, 0, "nic0", 5 + i)]) for i in range(100))
    )
    assert store.commits - before < 100
    await store.submit([UnholdOp(1000), BlockOp(7, "offline"), BlockOp(8, "offline")])
    await store.submit([UnblockOp(8)])
    await store.close()
    reopened = open_store()
    holders, runs, blocks = reopened.holders(), list(reopened.hold_runs()), reopened.block_states()
    reopened.close_now()
    assert [h[0] for h in holders] == ["nic0"]
    assert [(r.pfn, r.nr_holds) for r in runs] == [(1000 + i, 1) for i in range(1, 100)]
    assert blocks == {7: "offline"}


async def test_a_bad_submission_fails_the_later_ones_until_resume(open_store: Opener) -> None:
    store = open_store()
    store.start()
    undone: list[str] = []
    good = store.submit([HolderOp("nic0", None, 10.0, "", 1.0, "h", "s")])
    bad = store.submit(
        [HoldOp(5, 0, "nobody", 1)], lambda: undone.append("bad")
    )  # no such holder
    # made on top of the bad one in memory: it must not land without it
    later = store.submit([HolderOp("gpu0", None, 10.0, "", 1.0, "h2", "s")])
    await good
    with pytest.raises(StorageUnavailable):
        await bad
    with pytest.raises(StorageUnavailable, match="earlier change"):
        await later
    assert undone == ["bad"]
    store.resume()  # memory is back: commit again
    await store.submit([HolderOp("gpu0", None, 10.0, "", 1.0, "h2", "s")])
    await store.close()
    reopened = open_store()
    names = [h[0] for h in reopened.holders()]
    reopened.close_now()
    assert names == ["gpu0", "nic0"]


async def test_the_writer_survives_an_exception_that_is_not_sqlites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path)
    store.start()
    real = Store._transaction

    def broken(self: Store, ops: object, revisions: object = ()) -> None:
        raise ValueError("a bug in a statement's parameters")

    monkeypatch.setattr(Store, "_transaction", broken)
    with pytest.raises(StorageUnavailable, match="a bug"):
        await asyncio.wait_for(store.submit([HolderOp("nic0", None, 10.0, "", 1.0, "h", "s")]), 5)
    monkeypatch.setattr(Store, "_transaction", real)
    store.resume()
    # the writer thread is alive: the next write commits instead of waiting forever
    await asyncio.wait_for(store.submit([HolderOp("gpu0", None, 10.0, "", 1.0, "h2", "s")]), 5)
    await store.close()
