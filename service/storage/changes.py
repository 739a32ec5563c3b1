"""Committed revisions applied to a standby's registry: what changed, read back, applied.

A revision's events say *what* a change touched (which holders, which pfn ranges, which
blocks) but not everything it wrote (a holder's token hash and webhook secret are in
its row only). So a standby does not replay events: it reads the next revisions and,
in the same snapshot, the current rows of everything they touched, and makes its
memory equal to those rows (``apply``). Vocabulary::

    touched   the holders named by holder events, the ranges ``[pfn, pfn + 2**order)``
              of hold events (merged), the blocks of block events
    changes   revisions ``after + 1 .. last`` (consecutive) with the rows of what they
              touched, all read in one REPEATABLE READ snapshot (``read_changes``)

Why that is exact: every change writes its rows and its revision in one transaction,
and revisions commit in order (one writer; a takeover waits for the old writer's
transaction, ``postgres.FENCE_SQL``). A snapshot that shows revisions up to ``last``
shows the rows as of ``last``; memory equal to the rows at ``after`` for everything,
made equal to the rows at ``last`` for everything touched since, equals the rows at
``last`` for everything. What cannot be applied (a revision compacted away, a row that
overlaps a hold nothing touched) raises ``CannotFollow``: the standby then loads the
whole store when it takes over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pageholder.service.core.events import Revision
from pageholder.service.core.journal import HolderOp, stored_holder
from pageholder.service.core.model import Holder, OnExpiry
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.registry import Registry
from pageholder.service.storage.postgres import HOLDER_COLUMNS, SNAPSHOT_SQL
from pageholder.service.storage.recovery import holder_from_row, load_run
from pageholder.service.storage.runs import group_runs

#: revisions read (and applied) per snapshot
CHUNK = 1000

EVENTS_SQL = "SELECT rev, time, bodies FROM events WHERE rev > %s ORDER BY rev LIMIT %s"
HOLDERS_SQL = f"SELECT {HOLDER_COLUMNS} FROM holders WHERE name = ANY(%s)"
#: every stored hold that covers a page of one of the ranges (an index range each)
HOLDS_SQL = (
    "SELECT DISTINCT h.pfn, h.page_order, h.holder, h.since_us"
    " FROM unnest(%s::bigint[], %s::bigint[]) AS r(s, e)"
    " JOIN holds h ON h.pfn > r.s - (1::bigint << %s) AND h.pfn < r.e"
    " AND h.pfn + (1::bigint << h.page_order) > r.s ORDER BY h.pfn"
)
BLOCKS_SQL = "SELECT block, state FROM block_states WHERE block = ANY(%s)"


class CannotFollow(Exception):
    """The standby's memory cannot be brought up to date revision by revision."""


@dataclass(frozen=True, slots=True)
class Touched:
    """What some revisions changed (see the module docstring)."""

    holders: frozenset[str]
    ranges: list[tuple[int, int]]  # disjoint, ascending ``[start, end)``
    blocks: frozenset[int]


def touched(revisions: Iterable[Revision]) -> Touched:
    """What ``revisions`` changed. Cost: O(holds named, log of them)."""
    holders: set[str] = set()
    ranges: list[tuple[int, int]] = []
    blocks: set[int] = set()
    for revision in revisions:
        for body in revision.bodies:
            category = body.type.category
            if category == "holder" and body.holder is not None:
                holders.add(body.holder)
            elif category == "block" and body.block is not None:
                blocks.add(body.block)
            ranges.extend((pfn, pfn + (1 << order)) for pfn, order in body.holds)
    return Touched(frozenset(holders), merge(ranges), frozenset(blocks))


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges sorted, overlapping or adjacent ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


@dataclass(slots=True)
class Changes:
    """Consecutive revisions and the rows of what they touched, from one snapshot."""

    revisions: list[Revision]
    touched: Touched
    holders: dict[str, HolderOp | None] = field(default_factory=dict)  # None: no row
    holds: list[tuple[int, int, str, int]] = field(default_factory=list)  # pfn order
    blocks: dict[int, str | None] = field(default_factory=dict)  # None: no row (online)


def read_changes(db: psycopg.Connection[Any], after: int, limit: int = CHUNK) -> Changes:
    """The revisions after ``after`` (at most ``limit``) and the rows they touched, in one
    snapshot; no revisions if there is none. ``CannotFollow`` if the next revision was
    compacted away. Blocking (run it in a thread)."""
    with db.transaction():
        db.execute(SNAPSHOT_SQL)
        rows = db.execute(EVENTS_SQL, (after, limit)).fetchall()
        revisions = [Revision.from_json(rev, time, bodies) for rev, time, bodies in rows]
        for expected, revision in enumerate(revisions, after + 1):
            if revision.rev != expected:
                raise CannotFollow(f"revision {expected} is no longer kept (compacted)")
        what = touched(revisions)
        changes = Changes(revisions, what)
        if what.holders:
            changes.holders = dict.fromkeys(what.holders)
            for row in db.execute(HOLDERS_SQL, (list(what.holders),)):
                changes.holders[row[0]] = stored_holder(row)
        if what.ranges:
            starts, ends = zip(*what.ranges, strict=True)
            params = (list(starts), list(ends), MAX_ORDER)
            changes.holds = [tuple(r) for r in db.execute(HOLDS_SQL, params)]
        if what.blocks:
            changes.blocks = dict.fromkeys(what.blocks)
            for block, state in db.execute(BLOCKS_SQL, (list(what.blocks),)):
                changes.blocks[int(block)] = str(state)
    return changes


def apply(registry: Registry, changes: Changes) -> None:
    """Make ``registry`` equal to the rows of ``changes`` for everything they touched,
    and continue its revisions with theirs. Nothing else may use the registry meanwhile
    (a standby: the gate answers every /v1 call). ``CannotFollow`` leaves it half
    applied: the caller loads the whole store instead.
    Cost: O(touched holds * height), plus O(entries) per holder deleted or replaced."""
    for name, row in changes.holders.items():
        _holder(registry, name, row)
    _holds(registry, changes.touched.ranges, changes.holds)
    for block, state in changes.blocks.items():
        registry.blocks.follow(block, state)
    events = registry.events
    try:
        for revision in changes.revisions:
            events.follow(revision)
    except ValueError as exc:
        raise CannotFollow(str(exc)) from None


def _holder(registry: Registry, name: str, row: HolderOp | None) -> None:
    old = registry.holders.get(name)
    if old is not None and (row is None or row.created != old.created):
        _forget(registry, old)  # deleted (and maybe registered again: another holder)
        old = None
    if row is None:
        return
    if old is None:
        holder = holder_from_row(row)
        registry.enrol(holder)
        registry.leases.start(holder, row.lease_ttl_s)  # no loop here: no timer yet
        return
    if old.token_hash != row.token_hash:
        registry.unenrol(old)
        old.token_hash = row.token_hash
        registry.enrol(old)
    flips = (old.release_url is None) != (row.release_url is None)
    old.release_url = row.release_url
    old.no_handler_mark = row.release_url is None  # what its holds loaded from now get
    old.timeout_s = row.timeout_s
    old.description = row.description
    old.webhook_secret = row.webhook_secret
    old.on_expiry = OnExpiry(row.on_expiry)
    if old.lease_ttl_s != row.lease_ttl_s:
        registry.leases.start(old, row.lease_ttl_s)
    if flips and old.holds:
        for zh in registry.zones:
            zh.mark_handler(old, old.has_release_handler)


def _forget(registry: Registry, holder: Holder) -> None:
    """``holder`` and every hold of it gone (its row is, with its holds)."""
    if holder.holds:
        for zh in registry.zones:
            for head in list(zh.heads.heads(holder)):
                entry = zh.tree.load(head)
                assert entry is not None  # the index holds only heads in the tree
                zh.erase(entry)
    registry.unenrol(holder)


def _holds(
    registry: Registry, ranges: Sequence[tuple[int, int]], rows: list[tuple[int, int, str, int]]
) -> None:
    """Every hold covering a page of ``ranges`` erased, then the stored ones loaded."""
    for start, end in ranges:
        for zh in registry.zones:
            low, high = max(start, zh.zone.start_pfn), min(end, zh.zone.end_pfn)
            if low < high:
                for entry in list(zh.tree.items(low, high)):
                    zh.erase(entry)
    holders = registry.holders
    last_stamp = 0
    for run in group_runs(rows):
        holder = holders.get(run.holder)
        if holder is None:
            raise CannotFollow(f"stored hold at pfn {run.pfn} names no holder ({run.holder!r})")
        try:
            load_run(registry, run, holder)
        except Exception as exc:  # it overlaps a hold no revision touched
            raise CannotFollow(f"stored holds at pfn {run.pfn}: {exc}") from None
        last_stamp = max(last_stamp, run.since_us)
    registry.advance_stamp(last_stamp)
