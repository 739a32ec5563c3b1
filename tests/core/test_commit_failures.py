"""A full disk: commits failing at random never make memory and the journal diverge.

Finding 2 of issue 11: with the disk full, holder A unsets page P while holder B sets P;
both commits fail. Undos that ran in submission order restored nothing for A (P was
B's) and then erased B's hold: P was free in memory while the database still had A's
row. The property below draws interleavings of sets, unsets and overwrites with commits
failing at random, and compares memory with what the journal committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.core.registry import Registry

from ..fakes import FakeJournal

NORMAL = 1 << 20
HOLDERS = ("a", "b", "c")  # c has no release handler


async def never_called(
    holder: Holder, pages: Sequence[PageRef], *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    raise AssertionError("no release in these tests")


def make_registry() -> tuple[Registry, FakeJournal]:
    journal = FakeJournal()
    registry = Registry(MemoryLayout.default(), never_called, journal=journal)
    for name in HOLDERS:
        url = None if name == "c" else f"http://127.0.0.1:9/{name}"
        registry.enrol(Holder(name, release_url=url))
        journal.holders.add(name)
    return registry, journal


def memory_holds(registry: Registry) -> dict[int, tuple[int, str, int]]:
    found: dict[int, tuple[int, str, int]] = {}
    for zh in registry.zones:
        zh.tree._check()
        for entry in zh.tree.items():
            holder = entry.value
            assert isinstance(holder, Holder)
            found[entry.head] = (entry.order, holder.name, entry.stamp)
    return found


def check_agree(registry: Registry, journal: FakeJournal) -> None:
    memory = memory_holds(registry)
    assert memory == journal.holds
    for name in HOLDERS:
        mine = [order for order, holder, _ in memory.values() if holder == name]
        holder = registry.holder(name)
        assert (holder.holds, holder.held_pages) == (len(mine), sum(1 << o for o in mine))


pfns = st.integers(0, 15)
orders = st.integers(0, 2)
holders = st.sampled_from(HOLDERS)
actions = st.one_of(
    st.tuples(st.just("set"), pfns, orders, holders, st.booleans()),
    st.tuples(st.just("unset"), pfns),
    st.tuples(st.just("commit"), st.booleans()),
    st.tuples(st.just("yield")),
)


async def scenario(steps: list[tuple[object, ...]], tail: list[bool]) -> None:
    registry, journal = make_registry()
    tasks: list[asyncio.Task[object]] = []
    for step in steps:
        match step:
            case ("set", int(slot), int(order), str(name), bool(overwrite)):
                pfn = NORMAL + (slot >> order << order)
                coro = registry.set_hold(pfn, name, order=order, overwrite=overwrite)
                tasks.append(asyncio.create_task(coro))
            case ("unset", int(slot)):
                tasks.append(asyncio.create_task(registry.unset_hold(NORMAL + slot)))
            case ("commit", bool(fail)):
                journal.commit_next(fail)
            case _:
                await asyncio.sleep(0)
    # Drain: commit what is left (failing as drawn, then not), until everybody answered.
    await journal.drain(tasks, tail)
    check_agree(registry, journal)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, max_size=40), st.lists(st.booleans(), max_size=8))
def test_commits_failing_at_random_never_make_memory_and_journal_diverge(
    steps: list[tuple[object, ...]], tail: list[bool]
) -> None:
    asyncio.run(scenario(steps, tail))


def test_full_disk_unset_then_set_of_the_same_page_both_fail_and_agree() -> None:
    """The race of the report, played in the order that lost the hold."""

    async def race() -> None:
        registry, journal = make_registry()
        hold = asyncio.create_task(registry.set_hold(NORMAL, "a"))
        await asyncio.sleep(0)
        assert journal.commit_next(fail=False)
        await hold
        unset = asyncio.create_task(registry.unset_hold(NORMAL))  # A lets go of P
        await asyncio.sleep(0)
        take = asyncio.create_task(registry.set_hold(NORMAL, "b"))  # B takes P
        await asyncio.sleep(0)
        assert journal.commit_next(fail=True)  # the disk is full: A's unset fails
        for _ in range(100):
            await asyncio.sleep(0)
            journal.commit_next(fail=True)
            if unset.done() and take.done():
                break
        assert isinstance(unset.exception(), StorageUnavailable)
        assert isinstance(take.exception(), StorageUnavailable)
        check_agree(registry, journal)
        page = await registry.lookup(NORMAL)
        assert page.hold is not None and page.hold.holder.name == "a"

    asyncio.run(race())
