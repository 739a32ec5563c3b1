"""Holder changes over many holds run zone by zone in slices (issue 11, finding 4, the
holder part): a PATCH that gives or takes a holder's release handler and a forced
delete yield to the loop between slices, lookups in other zones and in the same zone
are answered meanwhile, and what those lookups see is never wrong: ``removable`` follows
the holder's URL of the moment, a removed holder makes no new hold. A holder without
holds costs no zone anything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from pageholder.service.core import errors
from pageholder.service.core.bulk import batch_set_ranges
from pageholder.service.core.layout import MemoryBlock
from pageholder.service.core.radix import RadixTree
from pageholder.service.core.registry import Registry
from pageholder.service.core.slices import SLICE
from pageholder.service.core.zone import NO_HANDLER

from .test_registry import NORMAL, make_registry
from .test_slices import observe

DMA32 = 4096
ENTRIES = 3 * SLICE  # a few slices, inside one 32768-page block
URL = "http://127.0.0.1:9/b"


async def with_holds(name: str) -> Registry:
    registry = await make_registry()
    await batch_set_ranges(registry, name, [], [(NORMAL, ENTRIES), (DMA32, 100)])
    return registry


def normal_block(registry: Registry) -> MemoryBlock:
    block = registry.layout.block(NORMAL // registry.layout.pages_per_block)
    assert block is not None
    return block


def marked_in_normal(registry: Registry) -> Callable[[], Awaitable[tuple[int, bool, bool]]]:
    """A probe that reads another zone (DMA) and then the Normal zone under its read
    lock: how many Normal holds are marked, whether the holder has a handler now and
    whether the block reads removable."""
    zh = registry.zones[2]
    block = normal_block(registry)

    async def probe() -> tuple[int, bool, bool]:
        await registry.lookup(1)  # DMA: never locked by the work
        async with zh.lock.reader_lock:
            marked = sum(1 for _ in zh.tree.marked(NO_HANDLER))
            has = registry.holders["balloon"].has_release_handler
            return marked, has, registry.block_usage(block).removable

    return probe


@pytest.mark.parametrize("gains", [True, False])
async def test_a_patch_of_many_holds_yields_and_removable_follows_the_url(gains: bool) -> None:
    registry = await with_holds("balloon")  # no handler: every hold marked
    if not gains:
        await registry.update_holder("balloon", release_url=URL)
    url = URL if gains else None
    seen = await observe(
        registry.update_holder("balloon", release_url=url), marked_in_normal(registry)
    )
    assert any(0 < marked < ENTRIES for marked, _, _ in seen), seen  # read mid-way
    for _, has, removable in seen:
        assert removable == has  # exact for the URL of the moment, marks half done or not
    assert seen[-1] == ((0, True, True) if gains else (ENTRIES, False, False))
    for zh in registry.zones:
        zh._check()


async def test_a_forced_delete_of_many_holds_yields_and_others_take_the_freed_pages() -> None:
    registry = await with_holds("nic0")
    zh = registry.zones[2]

    async def probe() -> int:
        await registry.lookup(1)
        async with zh.lock.reader_lock:  # the same zone, between slices
            return len(zh.tree)

    work = registry.remove_holder("nic0", force=True)
    seen = await observe(work, probe)
    assert seen[0] == ENTRIES and seen[-1] == 0
    assert any(0 < n < ENTRIES for n in seen), seen
    assert "nic0" not in registry.holders
    await registry.set_hold(NORMAL, "gpu0")
    for zone in registry.zones:
        zone._check()


async def test_a_set_hold_racing_a_forced_delete_is_refused_and_leaves_nothing() -> None:
    registry = await with_holds("nic0")
    removing = asyncio.create_task(registry.remove_holder("nic0", force=True))
    zh = registry.zones[2]
    async with asyncio.timeout(30):
        while len(zh.tree) in (0, ENTRIES):  # mid-sweep
            await asyncio.sleep(0)
    with pytest.raises(errors.HolderNotFound):
        await registry.set_hold(NORMAL + ENTRIES + 1, "nic0")  # not 201 for a gone holder
    assert await removing == ENTRIES + 100
    assert len(zh.tree) == 0 and len(registry.zones[1].tree) == 0


async def test_a_hold_made_while_the_handler_goes_away_is_marked() -> None:
    """The other half of finding 10: the holder loses its handler while a hold is made
    in a zone the marking already passed."""
    registry = await make_registry()
    await registry.set_hold(NORMAL, "nic0")
    normal = registry.zones[2]
    await normal.lock.writer_lock.acquire()  # the marking waits here, DMA32 done
    updating = asyncio.create_task(registry.update_holder("nic0", release_url=None))
    await asyncio.sleep(0.01)
    assert registry.holder("nic0").has_release_handler  # the URL goes last
    await registry.set_hold(DMA32, "nic0")
    dma32 = registry.zones[1].tree
    assert dma32.get_mark(DMA32, NO_HANDLER)  # marked although the URL is still set
    block = registry.layout.block(DMA32 // registry.layout.pages_per_block)
    assert block is not None and registry.block_usage(block).removable  # still true: URL
    normal.lock.writer_lock.release()
    await updating
    assert not registry.block_usage(block).removable
    assert normal.tree.get_mark(NORMAL, NO_HANDLER)
    for zh in registry.zones:
        zh._check()


async def test_a_patch_of_a_holder_without_holds_touches_no_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = await with_holds("gpu0")

    def touched(*args: object, **kwargs: object) -> None:
        raise AssertionError("a holder without holds made the registry touch a tree")

    for method in ("items", "load", "set_mark", "clear_mark", "erase", "marked"):
        monkeypatch.setattr(RadixTree, method, touched)
    for zh in registry.zones:  # every zone busy: the PATCH must not wait for any
        await zh.lock.writer_lock.acquire()
    async with asyncio.timeout(5):
        await registry.update_holder("balloon", release_url=URL)
        await registry.update_holder("balloon", release_url=None)
        await registry.update_holder("nic0", release_url=None, description="no handler")
    assert registry.holder("nic0").no_handler_mark


async def test_a_delete_waits_for_a_patch_of_the_same_holder_in_flight() -> None:
    registry = await with_holds("balloon")
    patching = asyncio.create_task(registry.update_holder("balloon", release_url=URL))
    zh = registry.zones[2]
    async with asyncio.timeout(30):  # the PATCH is clearing marks, mid-way
        while sum(1 for _ in zh.tree.marked(NO_HANDLER)) in (0, ENTRIES):
            await asyncio.sleep(0)
    assert await registry.remove_holder("balloon", force=True) == ENTRIES + 100
    assert patching.done() and patching.exception() is None  # it went first, whole
    assert next(zh.tree.marked(NO_HANDLER), None) is None and len(zh.tree) == 0
    for zone in registry.zones:
        zone._check()
