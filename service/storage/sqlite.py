"""The durable journal: holders, holds and block states in SQLite, with group commit.

One SQLite database (WAL, ``synchronous=FULL``) in the data directory, written by one
dedicated thread. The registry changes its trees first, under the zone's write lock,
and *submits* the matching ops from inside that lock, so the journal sees changes in
exactly the order memory saw them. It acknowledges a change only when the future that
``submit`` returned is done, that is after the transaction holding it committed.

Group commit: the writer thread takes every submission waiting in its queue, applies
them all in one transaction and commits once, so N concurrent writers pay for one
fsync, not N. A failed transaction is retried submission by submission, in order, up
to the first one that fails on its own: that one gets ``StorageUnavailable`` (and its
``on_failure`` callback runs on the event loop), and so does every submission after it,
untried, until the registry calls ``resume()``: they were made in memory on top of the
failed one (``core.commits`` takes them all back, newest first). Whatever goes wrong in
the writer (not only ``sqlite3.Error``) fails the group it was writing; the thread
itself keeps going, so no later write waits forever.

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

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import NamedTuple, TypeVar
from urllib.parse import quote

from pageholder.service.core.errors import StorageUnavailable
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

log = logging.getLogger("pageholder.store")
_T = TypeVar("_T")

DB_FILE = "pageholder.db"
SCHEMA_VERSION = 3
MAX_GROUP = 512  # submissions per transaction
#: Revisions kept at least (the events setting overrides it).
DEFAULT_RETENTION = 100_000

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



class HoldRun(NamedTuple):
    """``nr_holds`` stored holds of ``order`` by one holder with one ``since_us``, heads
    ``pfn, pfn + 1, ...`` (``nr_holds`` is 1 unless ``order`` is 0): what one batch's
    range left behind, read as one row."""

    pfn: int
    order: int
    nr_holds: int
    holder: str
    since_us: int


#: The pfns read per step while streaming holds: ``RUN_WINDOW`` pages in one aggregate.
RUN_WINDOW = 4096

_WINDOW_SQL = (
    "SELECT count(*), min(pfn), max(pfn), max(page_order), min(holder), max(holder),"
    " min(since_us), max(since_us) FROM holds WHERE pfn >= ? AND pfn < ?"
)
_NEXT_SQL = "SELECT min(pfn) FROM holds WHERE pfn >= ?"
_ROWS_SQL = (
    "SELECT pfn, page_order, holder, since_us FROM holds WHERE pfn >= ? AND pfn < ? ORDER BY pfn"
)


@dataclass(slots=True)
class _Submission:
    ops: Sequence[Op]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    on_failure: Callable[[], None] | None
    revision: Revision | None = None


_STOP = object()
_RESUME = object()  # the registry put memory back: later submissions may commit again


class Store:
    """The SQLite journal of one data directory; see the module docstring."""

    def __init__(
        self, path: Path, *, read_only: bool = False, lock: DataDirLock | None = None
    ) -> None:
        self.path = path
        self.read_only = read_only
        self._lock = lock or DataDirLock(None)
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        try:
            self._db = _connect(path, read_only)
        except BaseException:
            self._lock.release()
            raise
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed (group commit makes this < submissions)
        self.retention = DEFAULT_RETENTION
        self.compacted_through = 0  # revisions up to this one are deleted
        self._last_rev = 0  # the newest revision written (writer thread)
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
            start = db.execute(_NEXT_SQL, (0,)).fetchone()[0]
            while start is not None:
                low = start - start % RUN_WINDOW
                high = low + RUN_WINDOW
                count, first, last, order, holder, other, since, later = db.execute(
                    _WINDOW_SQL, (low, high)
                ).fetchone()
                if order == 0 and holder == other and since == later and last - first < count:
                    yield HoldRun(first, 0, count, holder, since)
                else:
                    yield from _runs(db.execute(_ROWS_SQL, (low, high)).fetchall())
                start = db.execute(_NEXT_SQL, (high,)).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the database ({exc})") from None

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return query(self._db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot read the database ({exc})") from None

    # -- writing ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="pageholder-store", daemon=True)
        self._thread.start()

    def submit(
        self,
        ops: Sequence[Op],
        on_failure: Callable[[], None] | None = None,
        revision: Revision | None = None,
    ) -> asyncio.Future[None]:
        """Queue ``ops`` (and ``revision``'s event row) for one transaction; the future is
        done once they committed.

        Call it from the event loop, inside the critical section that made the change.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Submission(ops, future, loop, on_failure, revision))
        return future

    def resume(self) -> None:
        """Commit again after a failure: what is submitted from now on is tried."""
        self._queue.put(_RESUME)

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
        if self._thread is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._db.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self._lock.release()

    def _writer(self) -> None:
        halted = False  # a submission failed: fail the later ones until _RESUME
        carried: object = None
        while True:
            item = self._queue.get() if carried is None else carried
            carried = None
            if item is _STOP:
                return
            if item is _RESUME:
                halted = False
                continue
            assert isinstance(item, _Submission)
            if halted:
                self._fail(item, _EARLIER_FAILED)
                continue
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(more, _Submission):
                    carried = more  # _STOP or _RESUME: after this group
                    break
                group.append(more)
            try:
                halted = not self._commit_group(group)
            except Exception as exc:  # a bug, not the disk: fail the group, keep writing
                log.exception("store %s: the writer failed", self.path)
                for submission in group:
                    self._fail(submission, exc)
                halted = True
            # Hold on to nothing while waiting for the next one: a batch's submission (its
            # 65,536 ops) would live on, scanned by every full collection meanwhile.
            del item, group
            more = None

    def _commit_group(self, group: list[_Submission]) -> bool:
        """Commit ``group``; False if a submission failed (it and the later ones are failed)."""
        try:
            self._transaction(
                [op for s in group for op in s.ops],
                [s.revision for s in group if s.revision is not None],
            )
        except Exception as exc:
            if len(group) == 1:
                self._fail(group[0], exc)
                return False
            for i, submission in enumerate(group):  # one by one: the ones before stand
                try:
                    self._transaction(submission.ops, _listed(submission.revision))
                except Exception as single:
                    self._fail(submission, single)
                    for later in group[i + 1 :]:
                        self._fail(later, _EARLIER_FAILED)
                    self._compact()
                    return False
                _resolve(submission, None)
            self._compact()
            return True
        for submission in group:
            _resolve(submission, None)
        self._compact()
        return True

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

    def _fail(self, submission: _Submission, exc: Exception) -> None:
        if exc is not _EARLIER_FAILED:
            log.error("store %s: commit failed: %s", self.path, exc)
        error = StorageUnavailable(f"the change was not saved: {exc}")
        _resolve(submission, error)


_EARLIER_FAILED = StorageUnavailable("an earlier change it depends on was not saved")


def _runs(rows: list[tuple[int, int, str, int]]) -> Iterator[HoldRun]:
    """Rows in pfn order grouped into runs: consecutive order-0 pfns of one holder and
    one ``since_us``."""
    i = 0
    n = len(rows)
    while i < n:
        pfn, order, holder, since = rows[i]
        j = i + 1
        if not order:
            expected = pfn + 1
            while j < n:
                row = rows[j]
                if row[0] != expected or row[1] or row[3] != since or row[2] != holder:
                    break
                expected += 1
                j += 1
        yield HoldRun(pfn, order, j - i, holder, since)
        i = j


def _listed(revision: Revision | None) -> list[Revision]:
    return [] if revision is None else [revision]


def _resolve(submission: _Submission, error: StorageUnavailable | None) -> None:
    def done() -> None:
        if error is not None and submission.on_failure is not None:
            submission.on_failure()
        if not submission.future.done():
            if error is None:
                submission.future.set_result(None)
            else:
                submission.future.set_exception(error)

    try:
        submission.loop.call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


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
