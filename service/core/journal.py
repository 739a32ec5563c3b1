"""What the registry tells its journal: the ``Journal`` it writes to, and the ops.

An *op* is one small typed value per row change; a store applies a submission's ops in
one transaction, in order. They are ``NamedTuple``s because a 65,536-entry batch makes
65,536 of them: cheap to build, and each one is already the row a store writes
(``HoldOp`` is ``(pfn, order, holder, since_us)``). The functions below are the only
places that build ops from the registry's objects::

    HoldOp(pfn, order, holder, since_us)     UnholdOp(pfn)
    HoldRangeOp(start_pfn, nr_pages, holder, since_us)   (nr_pages order-0 holds)
    HolderOp(name, release_url, timeout_s, description, created, token_hash, secret,
             lease_ttl_s, on_expiry)
    UnholderOp(name)                         (drops the holder's holds too)
    BlockOp(block, state)                    UnblockOp(block)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from pageholder.service.core.events import Revision
from pageholder.service.core.model import BlockState, Hold, Holder, SetResult, SetStatus


class HoldOp(NamedTuple):
    pfn: int
    order: int
    holder: str
    since_us: int


class HoldRangeOp(NamedTuple):
    """``nr_pages`` order-0 holds from ``start_pfn`` on, one row each in the store: a
    batch's range as one op, so the store writes its rows without a Python object each."""

    start_pfn: int
    nr_pages: int
    holder: str
    since_us: int


class UnholdOp(NamedTuple):
    pfn: int


class HolderOp(NamedTuple):
    name: str
    release_url: str | None
    timeout_s: float
    description: str
    created: float
    token_hash: str
    webhook_secret: str
    lease_ttl_s: float | None = None
    on_expiry: str = "keep"


class UnholderOp(NamedTuple):
    name: str


class BlockOp(NamedTuple):
    block: int
    state: str


class UnblockOp(NamedTuple):
    block: int


Op = HoldOp | HoldRangeOp | UnholdOp | HolderOp | UnholderOp | BlockOp | UnblockOp


class Journal(Protocol):
    """Where changes are made durable (``storage.sqlite.Store``); None keeps them in
    memory only. ``on_failure`` runs on the event loop if the commit fails. A
    ``revision`` (``core.events``) is written in the same transaction as ``ops``: no
    change without its event, no event without its change.

    Submissions commit in order. Once one fails, every later one fails without being
    tried (it was made in memory on top of the failed one) until ``resume()``, which
    the registry calls once memory is back to the journal's state (``core.commits``)."""

    def submit(
        self,
        ops: Sequence[Op],
        on_failure: Callable[[], None] | None = None,
        revision: Revision | None = None,
    ) -> asyncio.Future[None]: ...

    def resume(self) -> None: ...


def hold_op(pfn: int, order: int, holder: Holder, since_us: int) -> HoldOp:
    return HoldOp(pfn, order, holder.name, since_us)


def hold_range_op(start: int, nr_pages: int, holder: Holder, since_us: int) -> HoldRangeOp:
    return HoldRangeOp(start, nr_pages, holder.name, since_us)


def unhold_ops(holds: Iterable[Hold]) -> list[Op]:
    return [UnholdOp(h.pfn) for h in holds]


def holder_op(holder: Holder) -> HolderOp:
    return HolderOp(
        holder.name,
        holder.release_url,
        holder.timeout_s,
        holder.description,
        holder.created,
        holder.token_hash,
        holder.webhook_secret,
        holder.lease_ttl_s,
        holder.on_expiry.value,
    )


def stored_holder(row: Sequence[Any]) -> HolderOp:
    """A holder row as a store reads it back (its columns in ``HolderOp``'s order)."""
    return HolderOp(*row)


def unholder_op(holder: Holder) -> UnholderOp:
    return UnholderOp(holder.name)


def set_ops(result: SetResult) -> list[Op]:
    """What a set-hold changed: the holds it replaced go, the new one comes."""
    if result.status is SetStatus.UNCHANGED:
        return []
    ops = unhold_ops(result.previous)
    hold = result.hold
    ops.append(HoldOp(hold.pfn, hold.order, hold.holder.name, hold.since_us))
    return ops


def block_op(block: int, state: BlockState) -> Op:
    """A block's state: ``online`` is no row at all."""
    if state is BlockState.ONLINE:
        return UnblockOp(block)
    return BlockOp(block, state.value)
