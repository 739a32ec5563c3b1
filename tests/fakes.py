"""Test doubles shared by several test folders."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pageholder.service.core.errors import PageHolderError, StorageUnavailable
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


@dataclass
class _Submitted:
    ops: Sequence[Op]
    future: asyncio.Future[None]
    on_failure: Callable[[], None] | None


_RESUME = object()


@dataclass
class FakeJournal:
    """A journal whose commits the test runs one by one, failing the ones it chooses.

    It keeps the contract of ``storage.sqlite.Store``: submissions commit in order; once
    one fails, every later one fails untried until ``resume()``. What committed is kept
    as the store's rows would be (``holds``: pfn -> (order, holder, since_us)).
    """

    holders: set[str] = field(default_factory=set)
    holds: dict[int, tuple[int, str, int]] = field(default_factory=dict)
    blocks: dict[int, str] = field(default_factory=dict)
    queue: deque[_Submitted | object] = field(default_factory=deque)
    halted: bool = False
    failures: int = 0
    revisions: list[int] = field(default_factory=list)  # submitted with their ops

    def submit(
        self,
        ops: Sequence[Op],
        on_failure: Callable[[], None] | None = None,
        revision: Revision | None = None,
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(_Submitted(ops, future, on_failure))
        if revision is not None:
            self.revisions.append(revision.rev)
        return future

    def resume(self) -> None:
        self.queue.append(_RESUME)

    async def drain(
        self,
        tasks: Sequence[asyncio.Task[object]],
        tail: list[bool],
        each: Callable[[], None] | None = None,
        turns: int = 10_000,
    ) -> None:
        """Commit what is left, failing as ``tail`` says (popped from its end), then not,
        until every task answered; ``each()`` runs at every turn of the loop. The tasks
        may only have failed with a ``PageHolderError``."""
        for _ in range(turns):
            await asyncio.sleep(0)
            if each is not None:
                each()
            if self.commit_next(tail.pop() if tail else False):
                continue
            if all(t.done() for t in tasks) and not self.queue:
                break
        else:
            raise AssertionError("the scenario did not settle")
        for task in tasks:
            error = task.exception()
            assert error is None or isinstance(error, PageHolderError), repr(error)

    def commit_next(self, fail: bool) -> bool:
        """Commit (or fail) the oldest submission; False if nothing was waiting."""
        while self.queue and self.queue[0] is _RESUME:
            self.queue.popleft()
            self.halted = False
        if not self.queue:
            return False
        submitted = self.queue.popleft()
        assert isinstance(submitted, _Submitted)
        if fail or self.halted:
            self.halted = True
            self.failures += 1
            if submitted.on_failure is not None:
                submitted.on_failure()
            submitted.future.set_exception(StorageUnavailable("database or disk is full"))
            return True
        for op in submitted.ops:
            self._apply(op)
        submitted.future.set_result(None)
        return True

    def _apply(self, op: Op) -> None:
        match op:
            case HoldOp(pfn, order, holder, since_us):
                assert holder in self.holders, f"FOREIGN KEY: no holder {holder!r}"
                self.holds[pfn] = (order, holder, since_us)
            case HoldRangeOp(start, nr_pages, holder, since_us):
                assert holder in self.holders, f"FOREIGN KEY: no holder {holder!r}"
                for pfn in range(start, start + nr_pages):
                    self.holds[pfn] = (0, holder, since_us)
            case UnholdOp(pfn):
                self.holds.pop(pfn, None)
            case HolderOp(name=name):
                self.holders.add(name)
            case UnholderOp(name):
                self.holds = {p: h for p, h in self.holds.items() if h[1] != name}
                self.holders.discard(name)
            case BlockOp(block, state):
                self.blocks[block] = state
            case UnblockOp(block):
                self.blocks.pop(block, None)
            case _:
                raise AssertionError(f"the fake journal does not know {op!r}")
