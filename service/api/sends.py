"""A send with a deadline that costs nothing while the send does not wait.

uvicorn's ``send`` writes to the transport and returns without ever suspending, unless
the transport is paused because the client does not read; only then can a send take
long. A timer per send (``asyncio.timeout``: a ``TimerHandle`` pushed on the loop's
heap, then cancelled; anyio's ``move_on_after`` costs more still) cost more than the
write it guarded, on every send of every event stream. So ``send_within`` steps the
send's coroutine once by hand: if that finishes it, no timer was ever made; if it
suspends, the rest of it is awaited under the deadline, as a plain ``await`` would.
``start_send`` is that first step alone, for a send made outside any task (an event
stream's ring writes to every sleeping subscriber itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

from starlette.types import Message, Send


class _Rest:
    """Awaiting it runs the rest of ``coro``, which has already yielded ``pending``
    (what its task must wait on) and not been resumed since. What the task sends or
    throws in (its cancellation, say) goes to ``coro``, as if it were awaited."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, None]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # thrown in by the task: the coroutine's to handle
                try:
                    pending = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                pending = coro.send(sent)
            except StopIteration:
                return


def start_send(send: Send, message: Message) -> Awaitable[None] | None:
    """Start ``send(message)`` and run it as far as it goes without waiting: None when
    that finished it, else the rest of it, for a task to await. Raises what the send
    raises before it first waits. Cost: one step of the coroutine."""
    sending = send(message)
    if not isinstance(sending, Coroutine):  # not an async function's: no stepping
        return sending
    try:
        pending = sending.send(None)
    except StopIteration:
        return None  # sent without waiting
    return _Rest(sending, pending)


async def send_within(send: Send, message: Message, timeout: float) -> None:
    """``await send(message)``, raising ``TimeoutError`` if it takes over ``timeout``
    seconds; a send that does not suspend is done without a timer. Cost: one step of
    the coroutine, and a timer only when it waits."""
    rest = start_send(send, message)
    if rest is not None:
        async with asyncio.timeout(timeout):
            await rest
