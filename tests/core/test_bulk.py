"""Batch-set with ranges taken whole (core/bulk.py) answers and leaves exactly what the
page-by-page batch (core/batch.py) does, over the default layout's edges: pfns in no
zone, a range across two zones, held pages, a block offline, ranges overlapping each
other, overwrite, and an atomic batch failing half way."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pageholder.service.core import errors
from pageholder.service.core.batch import BatchItem, batch_set, expand
from pageholder.service.core.bulk import CreatedRun, batch_set_ranges
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry
from pageholder.service.core.slices import SLICE
from pageholder.service.core.zone import NO_HANDLER, RELEASING

NORMAL = 1 << 20  # DMA32 ends and Normal starts here; blocks of 32768 pages


async def no_caller(
    holder: Holder, pages: Sequence[PageRef], *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    raise AssertionError("no release in these tests")


async def registry() -> Registry:
    """Two holders (``h`` with a handler, ``g`` without), a few holds, block 40 offline;
    a fixed clock, so two of them hand out the same stamps."""
    reg = Registry(MemoryLayout.default(), no_caller, clock=lambda: 1000.0)
    await reg.add_holder("h", release_url="http://127.0.0.1:9/r")
    await reg.add_holder("g")
    await reg.set_hold(NORMAL + 100, "g")
    await reg.set_hold(NORMAL + 512, "h", order=9)
    await reg.set_hold(NORMAL + 2000, "h")
    reg.blocks.recover({40: "offline"})
    return reg


def flat(results: Sequence[BatchItem | CreatedRun]) -> list[BatchItem]:
    items: list[BatchItem] = []
    for r in results:
        if isinstance(r, CreatedRun):
            items.extend(
                BatchItem(p, 0, "created") for p in range(r.start_pfn, r.start_pfn + r.nr_pages)
            )
        else:
            items.append(r)
    return items


def state(reg: Registry) -> list[object]:
    """Every hold with its order, holder, stamp and marks, and every holder's counts."""
    seen: list[object] = []
    for zh in reg.zones:
        zh.tree._check()
        for e in zh.tree.items():
            marks = (zh.tree.get_mark(e.head, NO_HANDLER), zh.tree.get_mark(e.head, RELEASING))
            seen.append((zh.zone.id, e.head, e.order, e.value.name, e.stamp, marks))  # type: ignore[attr-defined]
    seen.extend((h.name, h.holds, h.held_pages) for h in reg.holders.values())
    return seen


CASES = {
    "free runs": ([], [(NORMAL + 4096, 30000)]),
    "no zone, two zones, held and offline pages": (
        [(NORMAL + 7, 0), (NORMAL + 1024, 10)],
        [(0, 3), (NORMAL - 70, 200), (NORMAL + 90, 20), (NORMAL + 500, 30), (40 * 32768 - 5, 9)],
    ),
    "ranges overlapping each other": ([], [(NORMAL + 3000, 100), (NORMAL + 3050, 100)]),
    "past the last zone": ([], [((1 << 22) - 3, 6)]),
}


@pytest.mark.parametrize("holder", ["h", "g"])
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("case", CASES)
async def test_ranges_taken_whole_answer_like_page_by_page(
    case: str, overwrite: bool, holder: str
) -> None:
    pages, ranges = CASES[case]
    paged, whole = await registry(), await registry()
    expected = await batch_set(paged, holder, expand(pages, ranges), overwrite=overwrite)
    got = await batch_set_ranges(whole, holder, pages, ranges, overwrite=overwrite)
    assert flat(got) == expected
    assert state(whole) == state(paged)
    if case == "free runs":
        assert got == [CreatedRun(NORMAL + 4096, 30000)]  # one result for the whole run


async def test_an_atomic_batch_failing_half_way_leaves_nothing() -> None:
    paged, whole = await registry(), await registry()
    before = state(whole)
    ranges = [(NORMAL + 4096, 5000), (NORMAL + 60, 100)]  # the second meets g's hold
    with pytest.raises(errors.PageHeld) as by_page:
        await batch_set(paged, "h", expand([], ranges), atomic=True)
    with pytest.raises(errors.PageHeld) as by_range:
        await batch_set_ranges(whole, "h", [], ranges, atomic=True)
    assert by_range.value.extra == by_page.value.extra
    assert state(whole) == state(paged) == before


async def test_a_range_batch_is_one_revision_with_every_hold_even_in_memory() -> None:
    # without a journal too: the console and watchers of a :memory: registry see it
    reg = Registry(MemoryLayout.default(), no_caller)
    await reg.add_holder("nic0")
    before = reg.events.published
    await batch_set_ranges(reg, "nic0", [], [(NORMAL, 5000)])
    assert reg.events.published == before + 1
    backlog, watcher = reg.events.subscribe(before)
    reg.events.unsubscribe(watcher)
    (parts,) = backlog
    holds = [h for part in parts for h in part.holds]
    assert len(holds) == 5000 and holds[0] == (NORMAL, 0)


async def test_an_expired_holder_takes_no_range() -> None:
    """As batch.batch_set: 409 lease_expired, nothing held (it held every free run)."""
    now = [1000.0]
    reg = Registry(MemoryLayout.default(), no_caller, monotonic=lambda: now[0])
    await reg.add_holder("nic0", lease_ttl_s=10)
    now[0] += 11
    with pytest.raises(errors.LeaseExpired):
        await batch_set_ranges(reg, "nic0", [], [(NORMAL, 5000)])
    assert reg.holder("nic0").holds == 0


async def test_a_range_that_is_not_free_is_taken_page_by_page_in_slices() -> None:
    reg = await registry()
    await batch_set(reg, "g", [(NORMAL + 4096 + i, 0) for i in range(0, 3 * SLICE, 2)])
    turns = 0
    done = False

    async def probe() -> None:
        nonlocal turns
        while not done:
            await asyncio.sleep(0)
            turns += 1

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    got = await batch_set_ranges(reg, "h", [], [(NORMAL + 4096, 3 * SLICE)])
    done = True
    await task
    assert turns >= 2  # at least every SLICE pages
    assert [r.status for r in flat(got)][:2] == ["error", "created"]


async def test_a_range_batch_cancelled_between_slices_is_taken_back_whole() -> None:
    reg = await registry()
    before = state(reg)
    await batch_set(reg, "g", [(NORMAL + 4096 + i, 0) for i in range(0, 3 * SLICE, 2)])
    held = state(reg)
    task = asyncio.create_task(batch_set_ranges(reg, "h", [], [(NORMAL + 4096, 3 * SLICE)]))
    async with asyncio.timeout(30):
        while reg.holder("h").holds < 4:  # h's first pages are in
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(reg) == held != before
