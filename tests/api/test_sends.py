"""send_within: a send that does not wait makes no timer; one that waits is awaited
under the deadline, its result, errors and cancellation passed on as by ``await``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message

from pageholder.service.api import sends
from pageholder.service.api.sends import send_within

MESSAGE: Message = {"type": "http.response.body", "body": b"x", "more_body": True}


def count_timers(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    made: list[float | None] = []
    original = asyncio.timeout

    def counted(delay: float | None) -> Any:
        made.append(delay)
        return original(delay)

    monkeypatch.setattr(sends.asyncio, "timeout", counted)
    return made


async def test_a_send_that_does_not_wait_makes_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    timers = count_timers(monkeypatch)
    got: list[Message] = []

    async def send(message: Message) -> None:
        got.append(message)

    await send_within(send, MESSAGE, 1.0)
    assert got == [MESSAGE] and timers == []


async def test_a_send_that_waits_finishes_under_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers = count_timers(monkeypatch)
    drained = asyncio.Event()
    steps: list[str] = []

    async def send(message: Message) -> None:
        steps.append("write")
        await drained.wait()  # the transport is paused until the client reads
        await asyncio.sleep(0)  # and once more: every resumption reaches the send
        steps.append("drained")

    task = asyncio.create_task(send_within(send, MESSAGE, 10.0))
    while not steps:
        await asyncio.sleep(0)
    assert not task.done()
    drained.set()
    await asyncio.wait_for(task, 5)
    assert steps == ["write", "drained"] and timers == [10.0]


async def test_a_send_that_waits_too_long_is_cancelled_and_times_out() -> None:
    cleaned = asyncio.Event()

    async def send(message: Message) -> None:
        try:
            await asyncio.Event().wait()  # never drained
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError):
        await send_within(send, MESSAGE, 0.01)
    assert cleaned.is_set()


async def test_errors_and_cancellation_reach_the_send_and_come_back() -> None:
    async def failing(message: Message) -> None:
        await asyncio.sleep(0)
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        await send_within(failing, MESSAGE, 10.0)

    cancelled = asyncio.Event()

    async def stuck(message: Message) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(send_within(stuck, MESSAGE, 10.0))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
