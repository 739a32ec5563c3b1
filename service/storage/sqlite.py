"""The durable journal: holders, holds and block states in SQLite, with group commit.

One SQLite database (WAL, ``synchronous=FULL``) in the data directory, written by one
dedicated thread. The registry changes its trees first, under the zone's write lock,
and *submits* the matching ops from inside that lock, so the journal sees changes in
exactly the order memory saw them. It acknowledges a change only when the future that
``submit`` returned is done, that is after the transaction holding it committed.

Group commit (``groupcommit.py``, shared with the PostgreSQL store): the writer thread
takes every submission waiting in its queue, applies them all in one transaction and
commits once, so N concurrent writers pay for one fsync, not N; a failed submission
fails every later one until ``resume()``.

The ops are ``core.journal``'s typed values; each one is the row (or the key) its
statement takes, so a run of ops of one type is one ``executemany``.

Events: a submission may carry its change's ``Revision`` (``core.events``); its row in
``events`` is written in the same transaction as the ops, so a change and its event
commit together or not at all. Revisions older than the last ``retention`` ones are
deleted now and then (``compacted_through`` says up to where); ``read_revisions``
reads the kept ones back on a connection of its own (WAL: readers never block the
writer).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from pageholder.service.core.events import Revision
from pageholder.service.core.journal import (
    BlockOp,
    HolderOp,
    HoldOp,
    HoldRangeOp,
    Op,
    UnblockOp,
    UnholderOp,
    UnholdOp,
)
from pageholder.service.storage.dirlock import DataDirLock
from pageholder.service.storage.errors import StoreError as StoreError
from pageholder.service.storage.groupcommit import DEFAULT_RETENTION as DEFAULT_RETENTION
from pageholder.service.storage.groupcommit import MAX_GROUP as MAX_GROUP
from pageholder.service.storage.groupcommit import GroupCommit
from pageholder.service.storage.runs import RUN_WINDOW as RUN_WINDOW
from pageholder.service.storage.runs import HoldRun as HoldRun
from pageholder.service.storage.runs import stream_runs

log = logging.getLogger("pageholder.store")
_T = TypeVar("_T")

DB_FILE = "pageholder.db"
SCHEMA_VERSION = 3

MIGRATIONS: dict[int, str] = {
    # version reached -> script that reaches it from the one before
    1: """
        CREATE TABLE holders (
            name TEXT PRIMARY KEY,
            release_url TEXT,
            timeout_s REAL NOT NULL,
            description TEXT NOT NULL,
            created REAL NOT NULL,
            token_hash TEXT NOT NULL,
            webhook_secret TEXT NOT NULL
        );
        CREATE TABLE holds (
            pfn INTEGER PRIMARY KEY,
            page_order INTEGER NOT NULL,
            holder TEXT NOT NULL REFERENCES holders(name),
            since_us INTEGER NOT NULL
        );
        CREATE INDEX holds_by_holder ON holds(holder);
        CREATE TABLE block_states (
            block INTEGER PRIMARY KEY,
            state TEXT NOT NULL
        );
    """,
    2: """
        CREATE TABLE events (
            rev INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            bodies TEXT NOT NULL
        );
    """,
    3: """
        ALTER TABLE holders ADD COLUMN lease_ttl_s REAL;
        ALTER TABLE holders ADD COLUMN on_expiry TEXT NOT NULL DEFAULT 'keep';
    """,
}

#: the holders table's columns, in ``HolderOp``'s order
HOLDER_COLUMNS = (
    "name, release_url, timeout_s, description, created, token_hash, webhook_secret, "
    "lease_ttl_s, on_expiry"
)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


#: each op type's statements; an op is the parameter row of each
SQL: dict[type[Op], tuple[str, ...]] = {
    HoldOp: ("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?)",),
    # One row per page, generated inside SQLite: no Python row object per hold.
    HoldRangeOp: (
        "WITH RECURSIVE run(pfn) AS (SELECT ?1 UNION ALL SELECT pfn + 1 FROM run"
        " WHERE pfn < ?1 + ?2 - 1) INSERT OR REPLACE INTO holds SELECT pfn, 0, ?3, ?4 FROM run",
    ),
    UnholdOp: ("DELETE FROM holds WHERE pfn = ?",),
    HolderOp: (f"INSERT OR REPLACE INTO holders ({HOLDER_COLUMNS}) VALUES ({_marks(9)})",),
    UnholderOp: ("DELETE FROM holds WHERE holder = ?", "DELETE FROM holders WHERE name = ?"),
    BlockOp: ("INSERT OR REPLACE INTO block_states VALUES (?, ?)",),
    UnblockOp: ("DELETE FROM block_states WHERE block = ?",),
}



class Store(GroupCommit):
    """The SQLite journal of one data directory; see the module docstring."""

    def __init__(
        self, path: Path, *, read_only: bool = False, lock: DataDirLock | None = None
    ) -> None:
        super().__init__()
        self.path = path
        self.description = str(path)
        self.read_only = read_only
        self._lock = lock or DataDirLock(None)
        try:
            self._db = _connect(path, read_only)
        except BaseException:
            self._lock.release()
            raise
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    @classmethod
    def open(cls, data_dir: Path) -> Store:
        """Open (creating or migrating) the store; ``StoreError`` if it is unusable.

        A data dir on a read-only filesystem opens read-only: everything is read back,
        and every change is refused (``StorageUnavailable``, 503) instead of lost.
        """
        path = data_dir / DB_FILE
        if data_dir.is_dir() and not os.access(data_dir, os.W_OK):
            if not path.exists():
                raise StoreError(f"{data_dir}: read-only, and it holds no pageholder database")
            _check_wal_readable(path)
            log.warning("store %s: the data dir is read-only; changes will be refused", path)
            store = cls(path, read_only=True)
        else:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # One server per data dir: a second one would overwrite the first's rows.
            lock = DataDirLock.acquire(data_dir)
            try:
                # It holds every holder's webhook secret: readable by its owner only.
                # SQLite gives its -wal and -shm files the database file's permissions.
                path.touch(mode=0o600, exist_ok=True)
                path.chmod(0o600)
            except BaseException:
                lock.release()
                raise
            store = cls(path, lock=lock)
        try:
            store._check_and_migrate()
        except BaseException:
            store._db.close()
            store._lock.release()
            raise
        return store

    def _check_and_migrate(self) -> None:
        db = self._db
        try:
            if not self.read_only:
                db.execute("PRAGMA journal_mode=WAL")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable pageholder database ({exc})") from None
        if ok != "ok":
            raise StoreError(f"{self.path}: the database is corrupt ({ok})")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this pageholder "
                f"({SCHEMA_VERSION}); upgrade pageholder"
            )
        if version < SCHEMA_VERSION and self.read_only:
            raise StoreError(f"{self.path}: needs a schema upgrade, but the data dir is read-only")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with db:
                db.executescript(f"BEGIN; {MIGRATIONS[target]}; PRAGMA user_version = {target};")
            log.info("store %s migrated to schema version %d", self.path, target)

    # -- reading (at start, before the writer thread runs) ----------------------------

    def holders(
        self,
    ) -> list[tuple[str, str | None, float, str, float, str, str, float | None, str]]:
        """Every holder row, by name."""
        return self._read(
            lambda db: list(db.execute(f"SELECT {HOLDER_COLUMNS} FROM holders ORDER BY name"))
        )

    def block_states(self) -> dict[int, str]:
        """Every stored block state (a block not listed is online)."""
        return self._read(lambda db: dict(db.execute("SELECT block, state FROM block_states")))

    def revision(self) -> int:
        """The last revision committed (0 for none); notes how far events were compacted."""
        first, last = self._read(
            lambda db: db.execute("SELECT MIN(rev), MAX(rev) FROM events").fetchone()
        )
        self._last_rev = last or 0
        self.compacted_through = self._last_rev if first is None else first - 1
        return self._last_rev

    def hold_touching(self, start: int, end: int, max_order: int) -> tuple[int, int, str] | None:
        """``(pfn, order, holder)`` of the lowest stored hold that covers a page of
        ``[start, end)`` (holds are at most ``2**max_order`` pages), or None. Cost: an
        index range of the pfns in ``[start - 2**max_order, end)``, stopping at the first."""
        low = max(0, start - (1 << max_order))
        sql = (
            "SELECT pfn, page_order, holder FROM holds WHERE pfn >= ? AND pfn < ?"
            " AND pfn + (1 << page_order) > ? ORDER BY pfn LIMIT 1"
        )
        row: tuple[int, int, str] | None = self._read(
            lambda db: db.execute(sql, (low, end, start)).fetchone()
        )
        return row

    def hold_runs(self) -> Iterator[HoldRun]:
        """Every stored hold once, in pfn order, as runs (``HoldRun``), streamed.

        SQLite aggregates ``RUN_WINDOW`` pfns at a time: a window held whole by one
        batch (one holder, one ``since``, order 0, no gap) is one run without a row of
        it reaching Python; only a mixed window's rows are read, and grouped here.
        Memory: one window's rows at most. Cost: O(rows) in SQLite, plus
        O(rows of mixed windows) in Python.
        """
        db = self._db
        try:
            yield from stream_runs(lambda sql, params: db.execute(sql, params).fetchall(), "?")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the database ({exc})") from None

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return query(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the database ({exc})") from None

    # -- writing ---------------------------------------------------------------------

    # -- reading events back -----------------------------------------------------------

    def read_revisions(self, after: int, limit: int) -> list[Revision]:
        """The kept revisions after ``after``, ascending, at most ``limit`` (blocking:
        run it in a thread). Check ``compacted_through`` *after* reading: a compaction
        that ran meanwhile may have taken some."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            rows = self._reader.execute(
                "SELECT rev, time, bodies FROM events WHERE rev > ? ORDER BY rev LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Revision.from_json(rev, time, bodies) for rev, time, bodies in rows]

    def close_now(self) -> None:
        """Close a store whose writer never started (a refused start)."""
        assert self._thread is None
        self._db.close()
        self._lock.release()

    async def close(self) -> None:
        """Finish what was submitted, stop the writer, close the database."""
        await self._stop_writer()
        self._db.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._lock.release()

    def _transaction(self, ops: Sequence[Op], revisions: Sequence[Revision] = ()) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for kind, run in groupby(ops, key=type):
                rows = list(run)
                for statement in SQL[kind]:
                    db.executemany(statement, rows)
            if revisions:
                db.executemany(
                    "INSERT INTO events VALUES (?, ?, ?)",
                    [(r.rev, r.time, r.to_json()) for r in revisions],
                )
            db.execute("COMMIT")
            self.commits += 1
            if revisions:
                self._last_rev = max(self._last_rev, revisions[-1].rev)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _compact(self) -> None:
        """Delete revisions older than the last ``retention`` ones, a tenth of the
        retention at a time (so that it is one statement now and then, not per commit).
        ``compacted_through`` moves first: a reader that checks it after reading never
        misses a deletion that overlapped its read."""
        through = self._last_rev - self.retention
        if through - self.compacted_through <= max(1, self.retention // 10) - 1:
            return
        self.compacted_through = through
        try:
            self._db.execute("DELETE FROM events WHERE rev <= ?", (through,))
        except sqlite3.Error as exc:  # retried with the next commit
            log.warning("store %s: compacting events failed: %s", self.path, exc)


def _wal_has_changes(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def _check_wal_readable(path: Path) -> None:
    """Refuse a read-only data dir whose write-ahead log SQLite cannot read: serving the
    database file without it would serve state from before the last changes."""
    shm = path.with_name(path.name + "-shm")
    if _wal_has_changes(path) and not shm.exists():
        raise StoreError(
            f"{path}: the data dir is read-only and its write-ahead log holds changes that "
            "cannot be read without writing; mount it read-write once to recover them"
        )


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    try:
        if read_only:
            # Changes a crash left in the write-ahead log are read from it (mode=ro reads
            # the -wal through its -shm). Without a log, immutable: nothing can change the
            # file, so SQLite needs no -shm either.
            immutable = "" if _wal_has_changes(path) else "&immutable=1"
            uri = f"file:{quote(str(path))}?mode=ro{immutable}"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a usable pageholder database ({exc})") from None
    return db
