"""RadixTree under a long seeded run of random operations, against a sorted model.

As sortedcontainers' ``tests/test_stress_*.py``: each action draws its arguments,
runs one tree operation, checks the answer against the model, and every so often
``_check()`` walks the whole tree. Windows of pfns are dense near 0, mixed near
2**22 and sparse far up at 2**34, with orders from 0 to MAX_ORDER.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from sortedcontainers import SortedDict

from pageholder.service.core.radix import MARK_COUNT, MAX_ORDER, Entry, Occupied, RadixTree

SEED = 0x9A6E
ACTIONS = 30_000
CHECK_EVERY = 250
WINDOWS = [(0, 1 << 14), (1 << 22, 1 << 21), (1 << 34, 1 << 24)]


class Model:
    """head -> (order, value, stamp, marks) in a SortedDict: overlaps by bisection."""

    def __init__(self) -> None:
        self.entries: SortedDict = SortedDict()

    def entry(self, head: int) -> Entry:
        order, value, stamp, _ = self.entries[head]
        return Entry(head, order, value, stamp)

    def end(self, head: int) -> int:
        return int(head + (1 << self.entries[head][0]))

    def overlapping(self, start: int, end: int) -> list[int]:
        found = []
        before = self.entries.bisect_left(start)
        if before:
            head = self.entries.keys()[before - 1]
            if self.end(head) > start:
                found.append(head)
        found.extend(self.entries.irange(start, end, inclusive=(True, False)))
        return found


class Stress:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tree = RadixTree()
        self.model = Model()
        self.serial = 0

    def where(self) -> tuple[int, int]:
        rng = self.rng
        order = 0 if rng.random() < 0.6 else rng.randint(1, MAX_ORDER)
        base, size = rng.choice(WINDOWS)
        head = base + (rng.randrange(size) >> order << order)
        return head, order

    def pfn(self) -> int:
        entries = self.model.entries
        if entries and self.rng.random() < 0.5:
            head = entries.keys()[self.rng.randrange(len(entries))]
            return head + self.rng.randrange(self.model.end(head) - head)
        head, order = self.where()
        return head + self.rng.randrange(1 << order)

    def value(self) -> str:
        self.serial += 1
        return f"v{self.serial}"

    def insert(self) -> None:
        head, order = self.where()
        value, stamp = self.value(), self.rng.choice([0, self.serial, -self.serial, 1 << 62])
        clash = self.model.overlapping(head, head + (1 << order))
        try:
            self.tree.insert(head, value, order, stamp)
        except Occupied as caught:
            assert clash and caught.entry == self.model.entry(clash[0])
        else:
            assert not clash
            self.model.entries[head] = (order, value, stamp, frozenset())

    def store(self) -> None:
        head, order = self.where()
        value, stamp = self.value(), self.serial
        clash = self.model.overlapping(head, head + (1 << order))
        assert self.tree.store(head, value, order, stamp) == [self.model.entry(h) for h in clash]
        for h in clash:
            del self.model.entries[h]
        self.model.entries[head] = (order, value, stamp, frozenset())

    def erase(self) -> None:
        pfn = self.pfn()
        expected = self.model.entry(pfn) if pfn in self.model.entries else None
        assert self.tree.erase(pfn) == expected
        self.model.entries.pop(pfn, None)

    def cmpxchg(self) -> None:
        pfn = self.pfn()
        if pfn not in self.model.entries:
            assert self.tree.cmpxchg(pfn, None, "x") is None
            return
        order, value, stamp, marks = self.model.entries[pfn]
        same = self.rng.random() < 0.7
        new, new_stamp = self.value(), self.rng.choice([None, self.serial])
        assert self.tree.cmpxchg(pfn, value if same else "other", new, new_stamp) == (
            self.model.entry(pfn)
        )
        if same:
            stamp = stamp if new_stamp is None else new_stamp
            self.model.entries[pfn] = (order, new, stamp, marks)

    def mark(self) -> None:
        pfn, mark, on = self.pfn(), self.rng.randrange(MARK_COUNT), self.rng.random() < 0.6
        covering = self.model.overlapping(pfn, pfn + 1)
        if not covering:
            with pytest.raises(KeyError):
                self.tree.get_mark(pfn, mark)
            return
        head = covering[0]
        order, value, stamp, marks = self.model.entries[head]
        if on:
            self.tree.set_mark(pfn, mark)
            marks = marks | {mark}
        else:
            self.tree.clear_mark(pfn, mark)
            marks = marks - {mark}
        self.model.entries[head] = (order, value, stamp, marks)
        assert self.tree.get_mark(head, mark) is on

    def load(self) -> None:
        pfn = self.pfn()
        covering = self.model.overlapping(pfn, pfn + 1)
        assert self.tree.load(pfn) == (self.model.entry(covering[0]) if covering else None)

    def ranges(self) -> None:
        start = self.pfn()
        end = start + self.rng.choice([1, 7, 64, 1000, 32768, 1 << 20])
        inside = self.model.overlapping(start, end)
        assert list(self.tree.items(start, end)) == [self.model.entry(h) for h in inside]
        assert self.tree.count_entries(start, end) == len(inside)
        pages = sum(min(self.model.end(h), end) - max(h, start) for h in inside)
        assert self.tree.count_pages(start, end) == pages
        mark = self.rng.randrange(MARK_COUNT)
        marked = [self.model.entry(h) for h in inside if mark in self.model.entries[h][3]]
        assert list(self.tree.marked(mark, start, end)) == marked

    def check(self) -> None:
        self.tree._check()
        assert len(self.tree) == len(self.model.entries)
        assert self.tree.pages == sum(self.model.end(h) - h for h in self.model.entries)


def test_stress() -> None:
    stress = Stress(random.Random(SEED))
    actions: list[tuple[Callable[[], None], int]] = [
        (stress.insert, 40),
        (stress.store, 4),
        (stress.erase, 14),
        (stress.cmpxchg, 6),
        (stress.mark, 12),
        (stress.load, 16),
        (stress.ranges, 8),
    ]
    functions = [f for f, _ in actions]
    weights = [w for _, w in actions]
    sizes = []
    for step in range(ACTIONS):
        stress.rng.choices(functions, weights)[0]()
        if step % CHECK_EVERY == 0:
            stress.check()
            sizes.append(len(stress.tree))
    stress.check()
    assert max(sizes) > 500, "the run never built a tree worth checking"
    # Drain: erase everything in random order; every node must go.
    heads = list(stress.model.entries)
    stress.rng.shuffle(heads)
    for i, head in enumerate(heads):
        assert stress.tree.erase(head) == stress.model.entry(head)
        del stress.model.entries[head]
        if i % CHECK_EVERY == 0:
            stress.check()
    stress.check()
    assert len(stress.tree) == 0 and stress.tree._root is None
