"""The shared journal: holders, holds and block states in PostgreSQL, with group commit.

The same tables, schema versions, ops and group commit (``groupcommit.py``) as the
embedded SQLite store, on a PostgreSQL server that several registries share: one of
them (the leader, ``leader.py``) writes, the others wait to take over.

Fencing: every write transaction first takes a share lock on the leader row *if* it
still names this registry's epoch and the lease has not run out on the database's clock
(``FENCE_SQL``); otherwise it writes nothing and fails. A takeover updates that row, so
it waits for a write transaction that holds the lock to end, and a write that starts
after it finds the epoch changed: a deposed leader's late write fails instead of
landing behind the new leader's back. A leader stopped *inside* a transaction (SIGSTOP,
a cut cable) does not hold the row forever: the server ends an idle transaction after
``IDLE_TX_TIMEOUT_MS`` (rolled back: it was never acknowledged).

A connection that breaks during a commit leaves the commit's outcome unknown; the
store then calls ``on_lost``: the registry steps down rather than serve memory that may
differ from the database (``api/leadership.py``).

Driver: psycopg 3, synchronous, in the writer thread (the same thread design as the
SQLite store); ``executemany`` is pipelined, so a group of N holds is one round trip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
from pageholder.service.storage.errors import StoreError
from pageholder.service.storage.groupcommit import GroupCommit
from pageholder.service.storage.protocol import HolderRow
from pageholder.service.storage.runs import HoldRun, stream_runs

log = logging.getLogger("pageholder.store")

SCHEMA_VERSION = 3  # the SQLite store's versions, in PostgreSQL's words
#: a transaction left idle this long (its client paused or cut off) is ended by the server
IDLE_TX_TIMEOUT_MS = 3000
#: how long a statement, or an unanswered TCP send, may take before the connection fails
STATEMENT_TIMEOUT_MS = 5000

MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE holders (
            name TEXT PRIMARY KEY,
            release_url TEXT,
            timeout_s DOUBLE PRECISION NOT NULL,
            description TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            token_hash TEXT NOT NULL,
            webhook_secret TEXT NOT NULL
        );
        CREATE TABLE holds (
            pfn BIGINT PRIMARY KEY,
            page_order INTEGER NOT NULL,
            holder TEXT NOT NULL REFERENCES holders(name),
            since_us BIGINT NOT NULL
        );
        CREATE INDEX holds_by_holder ON holds(holder);
        CREATE TABLE block_states (
            block BIGINT PRIMARY KEY,
            state TEXT NOT NULL
        );
        CREATE TABLE leader (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch BIGINT NOT NULL,
            owner TEXT NOT NULL,
            url TEXT,
            expires_at TIMESTAMPTZ NOT NULL
        );
    """,
    2: """
        CREATE TABLE events (
            rev BIGINT PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            bodies TEXT NOT NULL
        );
    """,
    3: """
        ALTER TABLE holders ADD COLUMN lease_ttl_s DOUBLE PRECISION;
        ALTER TABLE holders ADD COLUMN on_expiry TEXT NOT NULL DEFAULT 'keep';
    """,
}

HOLDER_COLUMNS = (
    "name, release_url, timeout_s, description, created, token_hash, webhook_secret, "
    "lease_ttl_s, on_expiry"
)
_HOLD_UPSERT = (
    " ON CONFLICT (pfn) DO UPDATE SET page_order = excluded.page_order,"
    " holder = excluded.holder, since_us = excluded.since_us"
)

#: each op type's statements; an op is the parameter row of each
SQL: dict[type[Op], tuple[str, ...]] = {
    HoldOp: ("INSERT INTO holds VALUES (%s, %s, %s, %s)" + _HOLD_UPSERT,),
    # One row per page, generated inside PostgreSQL: no Python row object per hold.
    HoldRangeOp: (
        "WITH r(s, n, h, t) AS (VALUES (%s::bigint, %s::bigint, %s::text, %s::bigint))"
        " INSERT INTO holds SELECT g, 0, r.h, r.t FROM r, generate_series(r.s, r.s + r.n - 1) g"
        + _HOLD_UPSERT,
    ),
    UnholdOp: ("DELETE FROM holds WHERE pfn = %s",),
    HolderOp: (
        f"INSERT INTO holders ({HOLDER_COLUMNS}) VALUES ({', '.join(['%s'] * 9)})"
        " ON CONFLICT (name) DO UPDATE SET release_url = excluded.release_url,"
        " timeout_s = excluded.timeout_s, description = excluded.description,"
        " created = excluded.created, token_hash = excluded.token_hash,"
        " webhook_secret = excluded.webhook_secret, lease_ttl_s = excluded.lease_ttl_s,"
        " on_expiry = excluded.on_expiry",
    ),
    UnholderOp: ("DELETE FROM holds WHERE holder = %s", "DELETE FROM holders WHERE name = %s"),
    BlockOp: (
        "INSERT INTO block_states VALUES (%s, %s)"
        " ON CONFLICT (block) DO UPDATE SET state = excluded.state",
    ),
    UnblockOp: ("DELETE FROM block_states WHERE block = %s",),
}

#: the write transaction's first statement: still the leader, and the lease still runs
FENCE_SQL = (
    "SELECT 1 FROM leader WHERE id = 1 AND epoch = %s AND owner = %s"
    " AND expires_at > clock_timestamp() FOR SHARE"
)


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease this registry was granted: its writes land only while it still holds."""

    epoch: int
    owner: str


class Fenced(Exception):
    """A write transaction found the lease gone: another registry leads (or will)."""


def describe(url: str) -> str:
    """``url`` without its password, for log lines."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (an unreadable URL)"
    host, port, db = parts.get("host", ""), parts.get("port", "5432"), parts.get("dbname", "")
    return f"postgresql://{host}:{port}/{db}"


def connect(url: str, *, autocommit: bool = True, **options: Any) -> psycopg.Connection[Any]:
    """A connection that notices a dead peer within seconds (TCP keepalives and a user
    timeout) and never waits on a lock or a statement for long."""
    settings = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    settings += f" -c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT_MS}"
    return psycopg.connect(
        url,
        autocommit=autocommit,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=2,
        keepalives_interval=1,
        keepalives_count=3,
        tcp_user_timeout=STATEMENT_TIMEOUT_MS,
        options=settings,
        **options,
    )


class PgStore(GroupCommit):
    """The PostgreSQL journal of one registry (leader and standbys share it)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.description = describe(url)
        self.fence: Fence | None = None  # set once leader; None writes unfenced (tools)
        #: called (from the writer thread) when a commit's outcome is unknown
        self.on_lost: Callable[[str], None] | None = None
        try:
            self._db = connect(url)
        except psycopg.Error as exc:
            raise StoreError(f"{self.description}: cannot connect ({_first_line(exc)})") from None
        self._writer_db: psycopg.Connection[Any] | None = None
        self._reader: psycopg.Connection[Any] | None = None
        self._reader_lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> PgStore:
        """Connect, and create or migrate the schema; ``StoreError`` if unusable."""
        store = cls(url)
        try:
            store._check_and_migrate()
        except BaseException:
            store.close_now()
            raise
        return store

    def _check_and_migrate(self) -> None:
        db = self._db
        try:
            with db.transaction():
                # Two registries starting at once: one migrates, the other waits.
                db.execute("SELECT pg_advisory_xact_lock(hashtext('pageholder.schema'))")
                db.execute("CREATE TABLE IF NOT EXISTS pageholder_schema (version INTEGER)")
                row = db.execute("SELECT version FROM pageholder_schema").fetchone()
                version = 0 if row is None else int(row[0])
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.description}: schema version {version} is newer than this "
                        f"pageholder ({SCHEMA_VERSION}); upgrade pageholder"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    db.execute(MIGRATIONS[target])
                    log.info("store %s migrated to schema version %d", self.description, target)
                if version < SCHEMA_VERSION:
                    db.execute("DELETE FROM pageholder_schema")
                    db.execute("INSERT INTO pageholder_schema VALUES (%s)", (SCHEMA_VERSION,))
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.description}: not a usable pageholder database ({_first_line(exc)})"
            ) from None

    # -- reading (at start, and by a registry taking over) ----------------------------

    def holders(self) -> list[HolderRow]:
        """Every holder row, by name."""
        rows = self._read(f"SELECT {HOLDER_COLUMNS} FROM holders ORDER BY name", ())
        return [tuple(row) for row in rows]

    def block_states(self) -> dict[int, str]:
        """Every stored block state (a block not listed is online)."""
        return {int(b): str(s) for b, s in self._read("SELECT block, state FROM block_states", ())}

    def revision(self) -> int:
        """The last revision committed (0 for none); notes how far events were compacted."""
        ((first, last),) = self._read("SELECT MIN(rev), MAX(rev) FROM events", ())
        self._last_rev = last or 0
        self.compacted_through = self._last_rev if first is None else first - 1
        return self._last_rev

    def hold_touching(self, start: int, end: int, max_order: int) -> tuple[int, int, str] | None:
        """``(pfn, order, holder)`` of the lowest stored hold that covers a page of
        ``[start, end)``, or None (an index range, stopping at the first)."""
        low = max(0, start - (1 << max_order))
        rows = self._read(
            "SELECT pfn, page_order, holder FROM holds WHERE pfn >= %s AND pfn < %s"
            " AND pfn + (1::bigint << page_order) > %s ORDER BY pfn LIMIT 1",
            (low, end, start),
        )
        return None if not rows else (int(rows[0][0]), int(rows[0][1]), str(rows[0][2]))

    def hold_runs(self) -> Iterator[HoldRun]:
        """Every stored hold once, in pfn order, as runs (``runs.stream_runs``)."""
        try:
            yield from stream_runs(lambda sql, p: self._db.execute(sql, p).fetchall(), "%s")
        except psycopg.Error as exc:
            raise StoreError(f"{self.description}: cannot read ({_first_line(exc)})") from None

    def _read(self, sql: str, params: tuple[int, ...]) -> list[tuple[Any, ...]]:
        try:
            if self._db.closed or self._db.broken:
                self._db = connect(self.url)
            return self._db.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"{self.description}: cannot read ({_first_line(exc)})") from None

    def read_revisions(self, after: int, limit: int) -> list[Revision]:
        """The kept revisions after ``after``, ascending, at most ``limit`` (blocking: run
        it in a thread); check ``compacted_through`` after reading."""
        with self._reader_lock:
            if self._reader is None or self._reader.closed or self._reader.broken:
                self._reader = connect(self.url)
            rows = self._reader.execute(
                "SELECT rev, time, bodies FROM events WHERE rev > %s ORDER BY rev LIMIT %s",
                (after, limit),
            ).fetchall()
        return [Revision.from_json(rev, time, bodies) for rev, time, bodies in rows]

    # -- writing (the writer thread) --------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        db = self._writer_db
        if db is None or db.closed or db.broken:
            if db is not None:
                db.close()
            self._writer_db = db = connect(self.url)
        return db

    def _transaction(self, ops: Sequence[Op], revisions: Sequence[Revision] = ()) -> None:
        try:
            db = self._connection()
        except psycopg.Error as exc:
            raise StoreUnreachable(_first_line(exc)) from None
        committing = False  # past the statements: a break now leaves the outcome unknown
        try:
            with db.transaction(), db.cursor() as cur:
                if self.fence is not None:
                    cur.execute(FENCE_SQL, (self.fence.epoch, self.fence.owner))
                    if cur.fetchone() is None:
                        raise Fenced(
                            f"this registry's leader lease (epoch {self.fence.epoch}) is gone"
                        )
                for kind, run in groupby(ops, key=type):
                    rows = list(run)
                    for statement in SQL[kind]:
                        cur.executemany(statement, rows)
                if revisions:
                    cur.executemany(
                        "INSERT INTO events VALUES (%s, %s, %s)",
                        [(r.rev, r.time, r.to_json()) for r in revisions],
                    )
                committing = True
        except Fenced:
            self._lost("the leader lease is gone")
            raise
        except psycopg.OperationalError as exc:
            if committing:
                # The commit may or may not have landed: memory cannot tell.
                self._lost(f"the connection broke during a commit ({_first_line(exc)})")
            if db.broken or db.closed:  # nothing was written; the next one reconnects
                raise StoreUnreachable(_first_line(exc)) from None
            raise
        self.commits += 1
        if revisions:
            self._last_rev = max(self._last_rev, revisions[-1].rev)

    def _retry_singly(self, exc: Exception) -> bool:
        return not isinstance(exc, Fenced | StoreUnreachable)

    def _lost(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)

    def _compact(self) -> None:
        """Delete revisions older than the last ``retention`` ones, a tenth of the
        retention at a time; ``compacted_through`` moves first (see the SQLite store)."""
        through = self._last_rev - self.retention
        if through - self.compacted_through <= max(1, self.retention // 10) - 1:
            return
        self.compacted_through = through
        try:
            self._connection().execute("DELETE FROM events WHERE rev <= %s", (through,))
        except psycopg.Error as exc:  # retried with the next commit
            log.warning("store %s: compacting events failed: %s", self.description, exc)

    def close_now(self) -> None:
        """Close a store whose writer never started (a refused start)."""
        for db in (self._db, self._writer_db, self._reader):
            if db is not None:
                db.close()

    async def close(self) -> None:
        """Finish what was submitted, stop the writer, close the connections."""
        await self._stop_writer()
        with self._reader_lock:
            self.close_now()


class StoreUnreachable(Exception):
    """The database could not be reached, or the connection broke mid-commit."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
