"""The registry's rules, one by one, then its races.

The layout is the built-in default (DMA [1, 4096), DMA32 [4096, 2**20), Normal
[2**20, 2**22), 32768-page blocks); release handlers are plain coroutines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pageholder.service.core import errors
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import (
    BlockState,
    FailureReason,
    Holder,
    HoldState,
    PageFailure,
    PageRef,
    ReleaseAnswer,
    SetStatus,
)
from pageholder.service.core.registry import Registry
from pageholder.service.core.zone import NO_HANDLER, RELEASING

NORMAL = 1 << 20  # first pfn of the Normal zone, block 32


class Handler:
    """A release handler that records calls and answers as told."""

    def __init__(self, answer: str = "ok", gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.gate = gate
        self.calls: list[tuple[str, list[PageRef], str]] = []

    async def __call__(
        self,
        holder: Holder,
        pages: Sequence[PageRef],
        *,
        reason: str,
        block: int | None,
        deadline: float,
    ) -> ReleaseAnswer:
        self.calls.append((holder.name, list(pages), reason))
        if self.gate is not None:
            await self.gate.wait()
        if self.answer == "ok":
            return ReleaseAnswer.all_released(pages)
        if self.answer == "refuse":
            return ReleaseAnswer.all_failed(pages, FailureReason.RELEASE_FAILED, "busy: DMA")
        if self.answer == "partial":
            return ReleaseAnswer(
                released={pages[0].pfn},
                failed={pages[1].pfn: PageFailure(FailureReason.RELEASE_FAILED, "pinned")},
            )
        if self.answer == "silent":
            return ReleaseAnswer()
        if self.answer == "hang":
            await asyncio.sleep(3600)
        raise RuntimeError("handler crashed")


async def make_registry(handler: Handler | None = None) -> Registry:
    registry = Registry(MemoryLayout.default(), handler or Handler())
    await registry.add_holder("nic0", release_url="http://127.0.0.1:9/release", timeout_s=0.5)
    await registry.add_holder("gpu0", release_url="http://127.0.0.1:9/gpu", timeout_s=0.5)
    await registry.add_holder("balloon")  # no release handler
    return registry


# -- holders ------------------------------------------------------------------------------


async def test_holder_names_are_checked_and_unique() -> None:
    registry = await make_registry()
    with pytest.raises(errors.HolderExists):
        await registry.add_holder("nic0")
    for bad in ("", "Nic0", "-x", "a" * 65, "sp ace"):
        with pytest.raises(errors.InvalidRequest):
            await registry.add_holder(bad)
    with pytest.raises(errors.InvalidRequest):
        await registry.add_holder("slow", timeout_s=31)
    with pytest.raises(errors.HolderNotFound):
        registry.holder("nobody")


async def test_removing_a_holder_with_holds_needs_force() -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL, "nic0", order=9)
    with pytest.raises(errors.HolderHasHolds) as refused:
        await registry.remove_holder("nic0")
    assert refused.value.extra["holds"] == 1
    assert await registry.remove_holder("nic0", force=True) == 1
    assert (await registry.lookup(NORMAL + 5)).hold is None
    assert "nic0" not in registry.holders
    backlog, _ = registry.events.subscribe(registry.events.revision - 1)
    assert [e.type for e in backlog[0]] == ["holder.deleted"]


async def test_handler_appearing_clears_the_no_handler_marks() -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL, "balloon", order=3)
    tree = registry.zones[2].tree
    assert tree.get_mark(NORMAL, NO_HANDLER)
    await registry.update_holder("balloon", release_url="http://127.0.0.1:9/b")
    assert not tree.get_mark(NORMAL, NO_HANDLER)
    await registry.update_holder("balloon", release_url=None)
    assert tree.get_mark(NORMAL, NO_HANDLER)
    tree._check()


# -- holding ------------------------------------------------------------------------------


async def test_set_lookup_unset() -> None:
    registry = await make_registry()
    result = await registry.set_hold(NORMAL + 512, "nic0", order=9)
    assert result.status is SetStatus.CREATED
    page = await registry.lookup(NORMAL + 700)
    assert page.hold is not None
    assert (page.hold.pfn, page.hold.order, page.hold.holder.name) == (NORMAL + 512, 9, "nic0")
    assert page.hold.state is HoldState.HELD
    assert page.zone.id == "0/Normal" and page.block == (NORMAL + 700) // 32768
    nic0 = registry.holder("nic0")
    assert (nic0.holds, nic0.held_pages) == (1, 512)
    await registry.unset_hold(NORMAL + 512, actor="nic0")
    assert (await registry.lookup(NORMAL + 700)).hold is None
    assert (nic0.holds, nic0.held_pages) == (0, 0)


async def test_reholding_the_same_hold_is_unchanged() -> None:
    registry = await make_registry()
    first = await registry.set_hold(NORMAL, "nic0", order=2)
    again = await registry.set_hold(NORMAL, "nic0", order=2, actor="nic0")
    assert again.status is SetStatus.UNCHANGED
    assert again.hold.since_us == first.hold.since_us
    assert registry.holder("nic0").holds == 1


async def test_a_held_page_is_refused_naming_its_holder() -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL, "nic0", order=4)
    with pytest.raises(errors.PageHeld) as refused:
        await registry.set_hold(NORMAL + 8, "gpu0")
    assert refused.value.extra == {"holder": "nic0", "head_pfn": NORMAL, "order": 4}
    # a bigger hold over it is refused just the same
    with pytest.raises(errors.PageHeld):
        await registry.set_hold(NORMAL, "gpu0", order=9)


async def test_overwrite_replaces_and_reports_the_previous_holds() -> None:
    registry = await make_registry()
    await registry.set_hold(NORMAL, "nic0")
    await registry.set_hold(NORMAL + 1, "gpu0")
    with pytest.raises(errors.Forbidden):
        await registry.set_hold(NORMAL, "gpu0", order=1, overwrite=True, actor="gpu0")
    result = await registry.set_hold(NORMAL, "gpu0", order=1, overwrite=True)
    assert result.status is SetStatus.OVERWRITTEN
    assert [(h.pfn, h.holder.name) for h in result.previous] == [
        (NORMAL, "nic0"),
        (NORMAL + 1, "gpu0"),
    ]
    assert registry.holder("nic0").holds == 0
    assert (registry.holder("gpu0").holds, registry.holder("gpu0").held_pages) == (1, 2)
    # a holder may overwrite its own holds
    own = await registry.set_hold(NORMAL, "gpu0", order=2, overwrite=True, actor="gpu0")
    assert own.status is SetStatus.OVERWRITTEN
    registry.zones[2].tree._check()


async def test_where_a_hold_may_not_go() -> None:
    registry = await make_registry()
    with pytest.raises(errors.Misaligned):
        await registry.set_hold(NORMAL + 1, "nic0", order=1)
    with pytest.raises(errors.PfnNotFound):
        await registry.set_hold(0, "nic0")
    with pytest.raises(errors.PfnNotFound):
        await registry.set_hold(1 << 22, "nic0")
    with pytest.raises(errors.InvalidRequest):
        await registry.set_hold(NORMAL, "nic0", order=19)
    with pytest.raises(errors.InvalidRequest):
        await registry.set_hold(-1, "nic0")
    with pytest.raises(errors.HolderNotFound):
        await registry.set_hold(NORMAL, "nobody")
    with pytest.raises(errors.Forbidden):
        await registry.set_hold(NORMAL, "nic0", actor="gpu0")


async def test_a_hold_may_not_cross_a_zone() -> None:
    layout = MemoryLayout.from_toml_text(
        "block_size = 4194304\n"
        '[[zone]]\nnode = 0\nname = "DMA32"\nstart_pfn = 0\nspanned_pages = 1000\n'
        '[[zone]]\nnode = 0\nname = "Normal"\nstart_pfn = 1000\nspanned_pages = 4000\n'
    )
    registry = Registry(layout, Handler())
    await registry.add_holder("nic0")
    with pytest.raises(errors.CrossesZone):
        await registry.set_hold(992, "nic0", order=4)
    assert (await registry.set_hold(992, "nic0", order=3)).status is SetStatus.CREATED


async def test_no_hold_starts_in_a_block_that_is_not_online() -> None:
    registry = await make_registry()
    block = NORMAL // 32768 + 1
    registry.blocks._set(block, BlockState.GOING_OFFLINE)
    with pytest.raises(errors.BlockNotOnline) as refused:
        await registry.set_hold(block * 32768 + 7, "nic0")
    assert refused.value.extra == {"block": block, "state": "going_offline"}
    # an order-18 hold that covers the block is refused too
    with pytest.raises(errors.BlockNotOnline):
        await registry.set_hold(NORMAL, "nic0", order=18)
    assert (await registry.set_hold(NORMAL, "nic0")).status is SetStatus.CREATED


async def test_unset_rules() -> None:
    registry = await make_registry()
    with pytest.raises(errors.PageNotHeld):
        await registry.unset_hold(NORMAL)
    await registry.set_hold(NORMAL, "nic0", order=6)
    with pytest.raises(errors.NotHead) as not_head:
        await registry.unset_hold(NORMAL + 5)
    assert not_head.value.extra["head_pfn"] == NORMAL
    with pytest.raises(errors.Forbidden):
        await registry.unset_hold(NORMAL, actor="gpu0")
    hold = await registry.unset_hold(NORMAL)
    assert (hold.pfn, hold.order) == (NORMAL, 6)


# -- release ------------------------------------------------------------------------------


async def test_release_erases_the_hold() -> None:
    handler = Handler()
    registry = await make_registry(handler)
    await registry.set_hold(NORMAL + 64, "nic0", order=6)
    released = await registry.release(NORMAL + 70)
    assert (released.hold.pfn, released.hold.holder.name) == (NORMAL + 64, "nic0")
    assert handler.calls == [("nic0", [PageRef(NORMAL + 64, 6)], "release")]
    assert (await registry.lookup(NORMAL + 70)).hold is None
    assert registry.holder("nic0").held_pages == 0


async def test_release_of_a_free_page_or_a_holder_without_handler() -> None:
    handler = Handler()
    registry = await make_registry(handler)
    with pytest.raises(errors.PageNotHeld):
        await registry.release(NORMAL)
    await registry.set_hold(NORMAL, "balloon")
    with pytest.raises(errors.NoReleaseHandler) as refused:
        await registry.release(NORMAL)
    assert refused.value.extra["holder"] == "balloon"
    assert handler.calls == []
    assert (await registry.lookup(NORMAL)).hold is not None


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("refuse", errors.ReleaseFailed),
        ("crash", errors.ReleaseFailed),
        ("silent", errors.ReleaseFailed),
        ("hang", errors.ReleaseTimeout),
    ],
)
async def test_a_failed_release_leaves_the_page_held(
    answer: str, error: type[errors.PageHolderError]
) -> None:
    registry = await make_registry(Handler(answer))
    await registry.set_hold(NORMAL, "nic0", order=1)
    with pytest.raises(error) as failed:
        await registry.release(NORMAL + 1)
    assert failed.value.extra["holder"] == "nic0"
    page = await registry.lookup(NORMAL)
    assert page.hold is not None and page.hold.state is HoldState.HELD
    assert registry.holder("nic0").last_error
    assert not registry.zones[2].tree.get_mark(NORMAL, RELEASING)
    # and it can be released again once the handler behaves
    registry._caller = Handler("ok")
    await registry.release(NORMAL)


async def test_a_partial_answer_counts_page_by_page() -> None:
    registry = await make_registry(Handler("partial"))
    await registry.set_hold(NORMAL, "nic0")
    await registry.set_hold(NORMAL + 1, "nic0")
    zh = registry.zones[2]
    entries = list(zh.tree.items(NORMAL, NORMAL + 2))
    for entry in entries:
        zh.tree.set_mark(entry.head, RELEASING)
    holder = registry.holder("nic0")
    answer = await registry.call_holder(
        holder, [PageRef(e.head, e.order) for e in entries], reason="offline", block=32
    )
    async with zh.lock.writer_lock:
        outcome = [zh.settle(e, e.head in answer.released, None) for e in entries]
    assert outcome == [True, False]
    assert answer.failed[NORMAL + 1].detail == "pinned"
    assert (await registry.lookup(NORMAL + 1)).hold is not None


# -- races --------------------------------------------------------------------------------


async def test_fifty_concurrent_releases_make_one_call() -> None:
    gate = asyncio.Event()
    handler = Handler(gate=gate)
    registry = await make_registry(handler)
    await registry.set_hold(NORMAL, "nic0", order=9)
    waiters = [asyncio.create_task(registry.release(NORMAL + i)) for i in range(50)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*waiters)
    assert len(handler.calls) == 1
    assert {r.hold.pfn for r in results} == {NORMAL}
    assert (await registry.lookup(NORMAL)).hold is None


async def test_concurrent_failing_releases_share_the_failure() -> None:
    registry = await make_registry(Handler("refuse"))
    await registry.set_hold(NORMAL, "nic0")
    outcomes = await asyncio.gather(
        *(registry.release(NORMAL) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, errors.ReleaseFailed) for o in outcomes)
    assert len(registry._caller.calls) == 1  # type: ignore[attr-defined]


async def test_a_releasing_page_cannot_be_held_unset_or_overwritten() -> None:
    gate = asyncio.Event()
    registry = await make_registry(Handler(gate=gate))
    await registry.set_hold(NORMAL, "nic0", order=2)
    release = asyncio.create_task(registry.release(NORMAL))
    await asyncio.sleep(0.01)
    assert (await registry.lookup(NORMAL + 3)).hold.state is HoldState.RELEASING  # type: ignore[union-attr]
    with pytest.raises(errors.PageReleasing):
        await registry.unset_hold(NORMAL)
    with pytest.raises(errors.PageReleasing):
        await registry.set_hold(NORMAL, "nic0", order=2)
    with pytest.raises(errors.PageReleasing):
        await registry.set_hold(NORMAL, "gpu0", order=9, overwrite=True)
    gate.set()
    await release


async def test_no_zone_lock_is_held_while_the_handler_runs() -> None:
    gate = asyncio.Event()
    registry = await make_registry(Handler(gate=gate))
    await registry.set_hold(NORMAL, "nic0")
    release = asyncio.create_task(registry.release(NORMAL))
    await asyncio.sleep(0.01)
    # same zone, while the handler is blocked: reads and writes go through
    async with asyncio.timeout(1):
        await registry.set_hold(NORMAL + 64, "gpu0")
        assert (await registry.lookup(NORMAL + 64)).hold is not None
        await registry.unset_hold(NORMAL + 64)
    gate.set()
    await release


async def test_a_late_success_after_the_page_was_held_again_erases_nothing() -> None:
    gate = asyncio.Event()
    registry = await make_registry(Handler(gate=gate))
    await registry.set_hold(NORMAL, "nic0", order=3)
    release = asyncio.create_task(registry.release(NORMAL))
    await asyncio.sleep(0.01)
    # the admin drops nic0 with its holds; gpu0 takes the same pages
    await registry.remove_holder("nic0", force=True)
    await registry.set_hold(NORMAL, "gpu0", order=3)
    gate.set()  # nic0's handler now says "released"
    await release
    page = await registry.lookup(NORMAL)
    assert page.hold is not None and page.hold.holder.name == "gpu0"
    assert page.hold.state is HoldState.HELD
    assert registry.holder("gpu0").holds == 1


async def test_a_caller_giving_up_does_not_cancel_the_shared_release() -> None:
    gate = asyncio.Event()
    handler = Handler(gate=gate)
    registry = await make_registry(handler)
    await registry.set_hold(NORMAL, "nic0")
    impatient = asyncio.create_task(registry.release(NORMAL))
    patient = asyncio.create_task(registry.release(NORMAL))
    await asyncio.sleep(0.01)
    impatient.cancel()
    gate.set()
    assert (await patient).hold.pfn == NORMAL
    assert impatient.cancelled()
    assert len(handler.calls) == 1
    assert (await registry.lookup(NORMAL)).hold is None


async def test_a_cancelled_release_puts_the_hold_back() -> None:
    gate = asyncio.Event()
    registry = await make_registry(Handler(gate=gate))
    await registry.set_hold(NORMAL, "nic0")
    waiter = asyncio.create_task(registry.release(NORMAL))
    await asyncio.sleep(0.01)
    (task,) = registry._releases.values()
    task.cancel()  # what shutdown does to in-flight work
    with pytest.raises(asyncio.CancelledError):
        await waiter
    page = await registry.lookup(NORMAL)
    assert page.hold is not None and page.hold.state is HoldState.HELD
    assert registry._releases == {}
