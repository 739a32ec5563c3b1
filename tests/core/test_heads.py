"""The index of each holder's heads: its encoding, then the property that matters: after
any interleaving of every change that adds or erases a hold (sets, overwrites, unsets,
batches, range fills, releases, offlines, reclaims, holder changes and forced deletes
swept in slices, commits failing at random) the index is what a scan of the trees finds,
no hold of a holder without a handler lacks its NO_HANDLER mark, and memory agrees
with the journal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pageholder.service.core import sweeps
from pageholder.service.core.batch import batch_set
from pageholder.service.core.bulk import batch_set_ranges
from pageholder.service.core.errors import PageHolderError
from pageholder.service.core.heads import Heads, group_of, heads_of_group
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import (
    FailureReason,
    Holder,
    PageRef,
    ReleaseAnswer,
)
from pageholder.service.core.offline import offline_block, online_block
from pageholder.service.core.radix import MAX_ORDER
from pageholder.service.core.registry import Registry

from ..fakes import FakeJournal

NORMAL = 1 << 20
DMA32_BLOCK = 32768  # block 1: all DMA32
TTL = 10.0


def test_every_order_round_trips_through_its_group() -> None:
    for order in range(MAX_ORDER + 1):
        for head in (0, 1 << order, 5 << order, (1 << 22) - (1 << order)):
            group, bit = group_of(head, order)
            assert list(heads_of_group(group, bit)) == [head], (head, order)


def test_a_dense_run_is_one_group_per_64_pages_and_counts() -> None:
    heads = Heads()
    h = Holder("h")
    heads.add_run(h, NORMAL + 3, NORMAL + 3 + 200)
    assert len(heads.groups(h)) == 4
    assert sorted(heads.heads(h)) == list(range(NORMAL + 3, NORMAL + 203))
    assert heads.count(h) == 200
    heads.add(h, NORMAL + 512, 9)
    heads.discard(h, NORMAL + 3, 0)
    assert heads.heads_in(h, group_of(NORMAL + 512, 9)[0]) == [NORMAL + 512]
    for pfn in range(NORMAL + 4, NORMAL + 203):
        heads.discard(h, pfn, 0)
    heads.discard(h, NORMAL + 512, 9)
    assert not heads.has(h) and heads.holders() == []
    heads.add_run(h, NORMAL, NORMAL)  # an empty run leaves nothing behind
    assert not heads.has(h)


# -- the property ---------------------------------------------------------------------


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def answer(
    holder: Holder, pages: Sequence[PageRef], *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    """Releases pages whose head is a multiple of 8, refuses the others."""
    released = {p.pfn for p in pages if not p.pfn % 8}
    refused = [p for p in pages if p.pfn % 8]
    got = ReleaseAnswer.all_failed(refused, FailureReason.RELEASE_FAILED, "busy")
    got.released = released
    return got


HOLDERS = ("a", "b", "c")  # b has a lease; c starts without a release handler


def url_of(name: str) -> str:
    return f"http://127.0.0.1:9/{name}"


def make_registry() -> tuple[Registry, FakeJournal, Clock]:
    journal, clock = FakeJournal(), Clock()
    registry = Registry(MemoryLayout.default(), answer, journal=journal, monotonic=clock)
    for name in HOLDERS:
        registry.enrol(Holder(name, release_url=None if name == "c" else url_of(name)))
        journal.holders.add(name)
    registry.leases.start(registry.holder("b"), TTL)
    return registry, journal, clock


def pfn_of(slot: int, order: int) -> int:
    """16 slots of 4 pages: two leaves in DMA32's block 1, two in Normal's first block."""
    base = DMA32_BLOCK if slot < 8 else NORMAL
    return base + ((slot >> 2) & 1) * 64 + (slot & 3) * 4 + (0 if order else slot >> 3 & 3)


def check_index(registry: Registry) -> None:
    """The index and counts are a scan's; a holder without a handler has every hold
    marked; ``removable`` is exact for every block the scenarios use."""
    for zh in registry.zones:
        zh._check()
    for block_id in (DMA32_BLOCK // 32768, NORMAL // 32768):
        block = registry.layout.block(block_id)
        assert block is not None
        bare = [
            e
            for zh in registry.zones
            for e in zh.tree.items(block.start_pfn, block.end_pfn)
            if not e.value.has_release_handler  # type: ignore[attr-defined]
        ]
        assert registry.block_usage(block).removable == (not bare)


def check_journal(registry: Registry, journal: FakeJournal) -> None:
    memory = {
        e.head: (e.order, e.value.name, e.stamp)  # type: ignore[attr-defined]
        for zh in registry.zones
        for e in zh.tree.items()
    }
    assert memory == journal.holds
    assert set(registry.holders) == journal.holders
    for holder in registry.holders.values():
        mine = [order for order, name, _ in memory.values() if name == holder.name]
        assert (holder.holds, holder.held_pages) == (len(mine), sum(1 << o for o in mine))


slots = st.integers(0, 15)
names = st.sampled_from(HOLDERS)
actions = st.one_of(
    st.tuples(st.just("set"), slots, st.integers(0, 2), names, st.booleans()),
    st.tuples(st.just("unset"), slots),
    st.tuples(st.just("batch"), names, st.lists(slots, max_size=6)),
    st.tuples(st.just("range"), names, slots, st.integers(1, 100)),
    st.tuples(st.just("release"), slots),
    st.tuples(st.just("offline"), st.booleans()),
    st.tuples(st.just("url"), names, st.booleans()),
    st.tuples(st.just("remove"), names),
    st.tuples(st.just("add"), names),
    st.tuples(st.just("expire")),
    st.tuples(st.just("reclaim")),
    st.tuples(st.just("commit"), st.booleans()),
    st.tuples(st.just("yield")),
    st.tuples(st.just("yield")),
)


def start(registry: Registry, clock: Clock, step: tuple[object, ...]) -> asyncio.Task[object]:
    match step:
        case ("set", int(slot), int(order), str(name), bool(overwrite)):
            pfn = pfn_of(slot, order) >> order << order
            coro: object = registry.set_hold(pfn, name, order=order, overwrite=overwrite)
        case ("unset", int(slot)):
            coro = registry.unset_hold(pfn_of(slot, 0))
        case ("batch", str(name), list(chosen)):
            entries = [(pfn_of(s, 0), 0) for s in dict.fromkeys(chosen)]
            coro = batch_set(registry, name, entries)
        case ("range", str(name), int(slot), int(n)):
            coro = batch_set_ranges(registry, name, [], [(pfn_of(slot, 0), n)])
        case ("release", int(slot)):
            coro = registry.release(pfn_of(slot, 0))
        case ("offline", bool(normal)):
            coro = offline_and_back(registry, (NORMAL if normal else DMA32_BLOCK) // 32768)
        case ("url", str(name), bool(has)):
            coro = registry.update_holder(name, release_url=url_of(name) if has else None)
        case ("remove", str(name)):
            coro = registry.remove_holder(name, force=True)
        case ("add", str(name)):
            url = None if name == "c" else url_of(name)
            coro = registry.add_holder(name, release_url=url)
        case ("reclaim",):
            coro = registry.leases.reclaim_now(registry.holder("b"))
        case _:
            raise AssertionError(step)
    return asyncio.ensure_future(coro)  # type: ignore[arg-type]


async def offline_and_back(registry: Registry, block: int) -> None:
    try:
        await offline_block(registry, block)
    except PageHolderError:
        return
    await online_block(registry, block)


async def scenario(steps: list[tuple[object, ...]], tail: list[bool]) -> None:
    registry, journal, clock = make_registry()
    tasks: list[asyncio.Task[object]] = []
    for step in steps:
        if step[0] == "commit":
            journal.commit_next(bool(step[1]))
        elif step[0] == "yield":
            await asyncio.sleep(0)
            check_index(registry)  # at every turn of the loop, whatever is half-way
        elif step[0] == "expire":
            clock.now += TTL + 1
        else:
            try:
                tasks.append(start(registry, clock, step))
            except PageHolderError:
                pass
    await journal.drain(tasks, tail, each=lambda: check_index(registry), turns=20_000)
    check_index(registry)
    check_journal(registry, journal)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, max_size=30), st.lists(st.booleans(), max_size=6))
# Found by this test: an offline settled some of b's holds while b's forced delete swept,
# then the delete's commit failed; the settle's undo ran first (newest first) and skipped
# b (not enrolled then), so b came back without those holds.
@example(
    [("range", "b", 6, 77), ("expire",), ("offline", False), ("set", 4, 0, "b", False)]
    + [("yield",), ("range", "c", 0, 92), ("remove", "b"), ("offline", False)],
    [False, True, False],
)
def test_the_index_is_a_scan_of_the_trees_whatever_happens(
    steps: list[tuple[object, ...]], tail: list[bool]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweeps, "SLICE", 1)  # sweeps yield after every group
        asyncio.run(scenario(steps, tail))
