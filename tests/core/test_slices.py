"""Long work yields to the loop in slices (issue 11, finding 4: valid work stalls too):
lookups in other zones are answered while a big batch or an offline's isolate, settle
and report run; readers of a batch's zone never see it half done, readers of an
offline's zone are answered between its slices (see ``core.offline``). A slice ends by
count or by time; a batch defers full collections, not young ones."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pageholder.service.core import collector, errors, slices
from pageholder.service.core.batch import batch_set, batch_unset, expand
from pageholder.service.core.collector import full_collections_deferred
from pageholder.service.core.model import BlockState
from pageholder.service.core.offline import offline_block
from pageholder.service.core.registry import Registry
from pageholder.service.core.slices import SLICE
from pageholder.service.core.zone import RELEASING

from .test_registry import NORMAL, Handler, make_registry

DMA32 = 4096
ENTRIES = 3 * SLICE  # a few slices, inside one 32768-page block
DEADLINE_S = 30.0


async def observe(work: Awaitable[Any], probe: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``work``; meanwhile call ``probe`` over and over and collect what it saw.
    Returns once the work is done (or raised), with the deadline as the bound."""
    task = asyncio.ensure_future(work)
    seen: list[Any] = []
    async with asyncio.timeout(DEADLINE_S):
        while not task.done():
            seen.append(await probe())
            await asyncio.sleep(0)  # one turn of the loop: the work's next slice
        seen.append(await probe())
    await asyncio.gather(task, return_exceptions=True)
    return seen


def held_in_normal(registry: Registry) -> Callable[[], Awaitable[int]]:
    """A lookup in DMA32 (a zone the work does not lock) that reports how many holds
    the Normal zone had when it was answered."""

    async def probe() -> int:
        await registry.lookup(DMA32)
        return len(registry.zones[2].tree)

    return probe


def both_ends(registry: Registry, first: int, last: int) -> Callable[[], Awaitable[bool]]:
    """A Normal-zone reader: are the first and the last page held alike?"""
    zh = registry.zones[2]

    async def probe() -> bool:
        async with zh.lock.reader_lock:
            return (zh.tree.load(first) is None) == (zh.tree.load(last) is None)

    return probe


async def test_a_big_batch_lets_other_zones_in_between_its_slices() -> None:
    registry = await make_registry()
    entries = [(NORMAL + i, 0) for i in range(ENTRIES)]
    seen = await observe(batch_set(registry, "nic0", entries), held_in_normal(registry))
    assert seen[0] == 0 and seen[-1] == ENTRIES
    assert any(0 < n < ENTRIES for n in seen), seen  # answered mid-batch
    registry.zones[2].tree._check()


@pytest.mark.parametrize("atomic", [False, True])
async def test_readers_of_the_batchs_zone_never_see_it_half_applied(atomic: bool) -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL + ENTRIES + 1, "gpu0")  # makes the atomic one fail last
    entries = [(NORMAL + i, 0) for i in range(ENTRIES)] + [(NORMAL + ENTRIES + 1, 0)]
    probe = both_ends(registry, NORMAL, NORMAL + ENTRIES - 1)
    seen = await observe(batch_set(registry, "nic0", entries, atomic=atomic), probe)
    assert len(seen) > 2 and all(seen)
    held = (await registry.lookup(NORMAL + ENTRIES - 1)).hold
    assert (held is None) == atomic
    registry.zones[2].tree._check()


async def test_a_batch_cancelled_between_slices_is_taken_back_whole() -> None:
    registry = await make_registry()
    entries = [(NORMAL + i, 0) for i in range(ENTRIES)]
    task = asyncio.create_task(batch_set(registry, "nic0", entries))
    async with asyncio.timeout(DEADLINE_S):
        while len(registry.zones[2].tree) < SLICE:  # the first slice is in
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(registry.zones[2].tree) == 0
    assert registry.holder("nic0").holds == 0


async def test_an_offline_of_many_holds_lets_other_zones_in_while_it_marks_and_settles() -> None:
    registry = await make_registry()
    block = NORMAL // 32768
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(ENTRIES)])
    tree = registry.zones[2].tree

    async def probe() -> tuple[int, int]:
        await registry.lookup(DMA32)
        return len(tree), sum(1 for _ in tree.marked(RELEASING))

    seen = await observe(offline_block(registry, block), probe)
    assert seen[-1] == (0, 0)
    assert any(0 < marked < ENTRIES for _, marked in seen), seen  # isolating, mid-way
    assert any(0 < held < ENTRIES for held, _ in seen), seen  # settling, mid-way


async def test_readers_of_the_offlined_zone_are_answered_while_it_marks_and_settles() -> None:
    registry = await make_registry()
    block = NORMAL // 32768
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(ENTRIES)])
    zh = registry.zones[2]

    async def probe() -> tuple[int, int]:  # a reader of the block's own zone
        async with zh.lock.reader_lock:
            return len(zh.tree), sum(1 for _ in zh.tree.marked(RELEASING))

    seen = await observe(offline_block(registry, block), probe)
    assert seen[-1] == (0, 0)
    assert any(0 < marked < ENTRIES for _, marked in seen), seen  # isolating, mid-way
    assert any(0 < held < ENTRIES for held, _ in seen), seen  # settling, mid-way


async def test_a_hold_of_a_block_going_offline_is_the_offlines_even_before_it_is_marked() -> None:
    handler = Handler("ok", gate=asyncio.Event())
    registry = await make_registry(handler)
    block = NORMAL // 32768
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(ENTRIES)])
    tree = registry.zones[2].tree
    last = NORMAL + ENTRIES - 1
    task = asyncio.create_task(offline_block(registry, block))
    async with asyncio.timeout(DEADLINE_S):
        while next(tree.marked(RELEASING), None) is None:
            await asyncio.sleep(0)
    assert not tree.get_mark(last, RELEASING)  # isolating: the last hold is not marked yet
    with pytest.raises(errors.PageReleasing):
        await registry.release(last)  # nor may a single-page release take it
    assert handler.gate is not None
    handler.gate.set()
    await task
    assert len(tree) == 0 and [c[2] for c in handler.calls] == ["offline"]


async def test_a_report_of_many_failures_is_built_between_turns_of_the_loop() -> None:
    registry = await make_registry(Handler("refuse"))
    block = NORMAL // 32768
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(ENTRIES)])
    tree = registry.zones[2].tree

    async def probe() -> bool:  # in another zone: settled, not committed yet?
        await registry.lookup(DMA32)
        going = registry.block_state(block) is BlockState.GOING_OFFLINE
        return going and next(tree.marked(RELEASING), None) is None

    seen = await observe(offline_block(registry, block), probe)
    # Every hold is held again and the block still going offline: the report is being
    # encoded for its event, a slice at a time, and others are answered in between.
    assert seen.count(True) >= 2, seen
    assert registry.block_state(block) is BlockState.ONLINE and len(tree) == ENTRIES


async def test_an_offline_cancelled_while_isolating_leaves_the_block_online() -> None:
    registry = await make_registry()
    block = NORMAL // 32768
    await batch_set(registry, "nic0", [(NORMAL + i, 0) for i in range(ENTRIES)])
    tree = registry.zones[2].tree
    task = asyncio.create_task(offline_block(registry, block))
    async with asyncio.timeout(DEADLINE_S):
        while next(tree.marked(RELEASING), None) is None:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert next(tree.marked(RELEASING), None) is None
    await registry.set_hold(NORMAL + ENTRIES, "gpu0")  # the block takes holds again
    with pytest.raises(errors.PageHeld):
        await registry.set_hold(NORMAL, "gpu0")


# -- slices cut by time, not only by count -------------------------------------------------


def test_a_slice_ends_after_slice_items_or_slice_s_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(slices, "perf_counter", lambda: now[0])
    cut = slices.Slices()
    due = [n for n in range(1, 3 * SLICE + 1) if cut.due(n)]
    assert due == [SLICE, 2 * SLICE, 3 * SLICE]  # the clock stands still: by count
    now[0] += slices.SLICE_S
    assert cut.over()
    assert not cut.due(slices.CHECK_EVERY - 1)  # the clock is read every CHECK_EVERY items
    assert cut.due(slices.CHECK_EVERY)


async def test_a_slice_begins_again_after_a_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(slices, "perf_counter", lambda: now[0])
    cut = slices.Slices()
    now[0] += slices.SLICE_S
    assert cut.due(slices.CHECK_EVERY)
    await cut.pause()
    assert not cut.over() and not cut.due(slices.CHECK_EVERY)


async def test_a_big_unset_lets_other_zones_in_between_its_slices() -> None:
    registry = await make_registry()
    entries = [(NORMAL + i, 0) for i in range(ENTRIES)]
    await batch_set(registry, "nic0", entries)
    seen = await observe(batch_unset(registry, entries), held_in_normal(registry))
    assert seen[0] == ENTRIES and seen[-1] == 0
    assert any(0 < n < ENTRIES for n in seen), seen  # answered mid-batch
    registry.zones[2].tree._check()


@settings(max_examples=200, deadline=None)
@given(
    pages=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 3)), max_size=5),
    ranges=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 5)), max_size=4),
    index=st.integers(-40, 40),
)
def test_expanded_entries_read_as_the_list_they_stand_for(
    pages: list[tuple[int, int]], ranges: list[tuple[int, int]], index: int
) -> None:
    listed = list(pages) + [(pfn, 0) for s, n in ranges for pfn in range(s, s + n)]
    entries = expand(pages, ranges)
    assert len(entries) == len(listed)
    assert list(entries) == listed == list(entries)  # read twice: the same
    assert entries[1:-1] == listed[1:-1]
    if -len(listed) <= index < len(listed):
        assert entries[index] == listed[index]
    else:
        with pytest.raises(IndexError):
            entries[index]


# -- full collections wait for a batch, young ones do not ----------------------------------


def test_full_collections_are_deferred_while_batches_run_and_nest() -> None:
    threshold = gc.get_threshold()
    with full_collections_deferred():
        assert gc.get_threshold() == (threshold[0], threshold[1], collector.NEVER)
        with full_collections_deferred():  # a second batch, interleaved
            pass
        assert gc.get_threshold()[2] == collector.NEVER  # the first still runs
    assert gc.get_threshold() == threshold


async def test_a_batch_defers_full_collections_only_while_it_runs() -> None:
    registry = await make_registry()
    threshold = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    async def probe() -> None:
        seen.append(gc.get_threshold())

    entries = [(NORMAL + i, 0) for i in range(ENTRIES)]
    await observe(batch_set(registry, "nic0", entries), probe)
    assert (threshold[0], threshold[1], collector.NEVER) in seen  # mid-batch
    assert gc.isenabled()
    assert gc.get_threshold() == threshold


def test_full_collections_come_back_when_batches_overlap_for_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(collector, "monotonic", lambda: now[0])
    threshold = gc.get_threshold()
    with full_collections_deferred():
        now[0] += collector.MAX_DEFERRAL_S + 1
        with full_collections_deferred():  # one more batch, and no break since
            assert gc.get_threshold() == threshold
    assert gc.get_threshold() == threshold
