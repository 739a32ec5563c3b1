"""Races between holder changes, holds and releases (issue 11, findings 7 and 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pageholder.service.core import errors
from pageholder.service.core.batch import batch_set
from pageholder.service.core.radix import RadixTree
from pageholder.service.core.zone import NO_HANDLER

from .test_registry import NORMAL, Handler, make_registry

DMA32 = 4096


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


async def test_set_hold_queued_behind_remove_holder_refuses_the_removed_holder() -> None:
    registry = await make_registry()
    normal = registry.zones[2]
    await normal.lock.writer_lock.acquire()  # somebody busy in the Normal zone
    removing = asyncio.create_task(registry.remove_holder("nic0"))
    holding = asyncio.create_task(registry.set_hold(NORMAL, "nic0"))
    batching = asyncio.create_task(batch_set(registry, "nic0", [(NORMAL + 8, 0)]))
    await asyncio.sleep(0.01)
    normal.lock.writer_lock.release()
    assert await removing == 0
    with pytest.raises(errors.HolderNotFound):
        await holding  # not 201 for a holder that no longer exists
    with pytest.raises(errors.HolderNotFound):
        await batching
    assert (await registry.lookup(NORMAL)).hold is None
    assert (await registry.lookup(NORMAL + 8)).hold is None


async def test_a_hold_made_while_update_holder_remarks_zones_keeps_no_stale_mark() -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL, "balloon")  # balloon has holds: its marks must follow
    normal = registry.zones[2]
    await normal.lock.writer_lock.acquire()
    updating = asyncio.create_task(
        registry.update_holder("balloon", release_url="http://127.0.0.1:9/b")
    )
    await asyncio.sleep(0.01)
    # DMA32 comes before Normal: a hold made there now must not keep "no handler"
    holding = asyncio.create_task(registry.set_hold(DMA32, "balloon"))
    await asyncio.sleep(0.01)
    normal.lock.writer_lock.release()
    await updating
    await holding
    dma32 = registry.zones[1].tree
    assert not dma32.get_mark(DMA32, NO_HANDLER)
    assert not normal.tree.get_mark(NORMAL, NO_HANDLER)
    block = registry.layout.block(DMA32 // registry.layout.pages_per_block)
    assert block is not None and registry.block_usage(block).removable


async def test_holder_changes_without_holds_do_not_walk_the_trees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = await make_registry()
    await batch_set(registry, "gpu0", [(NORMAL + i, 0) for i in range(1000)])

    def walked(*args: object, **kwargs: object) -> None:
        raise AssertionError("a holder without holds made the registry walk a tree")

    monkeypatch.setattr(RadixTree, "items", walked)
    await registry.update_holder("balloon", release_url="http://127.0.0.1:9/b")
    await registry.update_holder("balloon", release_url=None)
    assert await registry.remove_holder("balloon") == 0


async def test_a_second_release_after_force_delete_and_rehold_calls_the_new_holder() -> None:
    gate = asyncio.Event()
    handler = Handler(gate=gate)
    registry = await make_registry(handler)
    await registry.set_hold(NORMAL, "nic0")
    first = asyncio.create_task(registry.release(NORMAL))
    await until(lambda: len(handler.calls) == 1)
    # while nic0's handler runs: the admin drops nic0, gpu0 takes the page
    await registry.remove_holder("nic0", force=True)
    await registry.set_hold(NORMAL, "gpu0")
    second = asyncio.create_task(registry.release(NORMAL))
    await until(lambda: len(handler.calls) == 2)
    assert handler.calls[1][0] == "gpu0"  # the new holder is asked, not answered for
    gate.set()
    assert (await first).hold.holder.name == "nic0"
    released = await second
    assert released.hold.holder.name == "gpu0"
    assert (await registry.lookup(NORMAL)).hold is None
