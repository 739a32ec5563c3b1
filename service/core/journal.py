"""What the registry tells its journal: the ``Journal`` it writes to, and the ops.

The ops are small tuples (``store.py`` lists them); these functions are the only places
that build them from the registry's objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pageholder.service.core.model import Hold, Holder, SetResult, SetStatus

Op = tuple[Any, ...]


class Journal(Protocol):
    """Where changes are made durable (``store.Store``); None keeps them in memory only."""

    def submit(
        self, ops: Sequence[Op], on_failure: Callable[[], None] | None = None
    ) -> asyncio.Future[None]: ...


def hold_op(hold: Hold) -> Op:
    return ("hold", hold.pfn, hold.order, hold.holder.name, hold.since_us)


def holder_op(holder: Holder) -> Op:
    return (
        "holder",
        holder.name,
        holder.release_url,
        holder.timeout_s,
        holder.description,
        holder.created,
        holder.token_hash,
        holder.webhook_secret,
    )


def set_ops(result: SetResult) -> list[Op]:
    if result.status is SetStatus.UNCHANGED:
        return []
    ops: list[Op] = [("unhold", p.pfn) for p in result.previous]
    ops.append(hold_op(result.hold))
    return ops
