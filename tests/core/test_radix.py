"""RadixTree: the pfn radix tree, rule by rule, then against a model.

The story: where entries of each order live and what they cost in slots; overlap
detection for every pair of orders (a big entry over many small ones and a small one
inside a big one); ``store`` replacing, ``erase`` only at a head, ``cmpxchg``; marks
and their propagation through the node bitmaps; ``items`` resumed from any pfn;
counting; stamps; the tree growing and shrinking; argument errors; ``_check``
catching corruption. Last, a hypothesis state machine runs every operation against
a dict model with ``_check()`` after each step.
"""

from __future__ import annotations

import doctest
import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pageholder.service.core import radix as radix_module
from pageholder.service.core.radix import (
    CHUNK_MASK,
    CHUNK_SHIFT,
    CHUNK_SIZE,
    MARK_COUNT,
    MAX_ORDER,
    Entry,
    Node,
    Occupied,
    RadixTree,
)


def build(*entries: tuple[int, int]) -> RadixTree:
    """A tree holding ``(head, order)`` entries; the value is the string ``"head/order"``."""
    tree = RadixTree()
    for head, order in entries:
        tree.insert(head, f"{head}/{order}", order)
    tree._check()
    return tree


def heads(entries: Iterator[Entry] | list[Entry]) -> list[tuple[int, int]]:
    return [(e.head, e.order) for e in entries]


def leaf_count(tree: RadixTree) -> int:
    return len(tree._leaves)


def test_module_doctests() -> None:
    failed, attempted = doctest.testmod(radix_module)
    assert attempted > 0 and failed == 0


def test_constants() -> None:
    assert (CHUNK_SHIFT, CHUNK_SIZE, CHUNK_MASK) == (6, 64, 63)
    assert (MAX_ORDER, MARK_COUNT) == (18, 3)


# -- placement: where an entry lives and what it costs ---------------------------------


def test_empty_tree() -> None:
    tree = RadixTree()
    assert len(tree) == 0 and tree.pages == 0
    assert tree.load(0) is None and tree.load(10**12) is None
    assert list(tree.items()) == [] and tree.count_pages(0, 1 << 40) == 0
    assert tree.erase(0) is None
    tree._check()


@pytest.mark.parametrize("order", range(MAX_ORDER + 1))
def test_entry_lives_at_its_canonical_shift(order: int) -> None:
    head = 3 << order
    tree = build((head, order))
    node = tree._root
    assert node is not None
    while node.shift > order - order % CHUNK_SHIFT:
        slot = node.slots[(head >> node.shift) & CHUNK_MASK]
        assert type(slot) is Node
        node = slot
    span = 1 << (order % CHUNK_SHIFT)
    assert node.shift == CHUNK_SHIFT * (order // CHUNK_SHIFT)
    assert node.bitmap.bit_count() == span
    assert node.siblings.bit_count() == span - 1
    assert len(tree) == 1 and tree.pages == 1 << order


def test_order_9_costs_eight_slots_not_512_leaves() -> None:
    tree = build((512, 9))
    root = tree._root
    assert root is not None and root.shift == 6
    assert root.bitmap == 0xFF << 8 and leaf_count(tree) == 0


def test_order_18_is_one_slot_at_shift_18() -> None:
    tree = build((1 << 18, 18))
    root = tree._root
    assert root is not None and root.shift == 18 and root.bitmap == 0b10


def test_load_finds_every_covered_index_of_a_multi_order_entry() -> None:
    tree = build((4096, 9), (40, 3), (1 << 18, 18))
    for pfn in (4096, 4097, 4096 + 255, 4096 + 511):
        assert tree.load(pfn) == Entry(4096, 9, "4096/9", 0)
    for pfn in range(40, 48):
        assert tree.load(pfn) == Entry(40, 3, "40/3", 0)
    for pfn in (1 << 18, (1 << 18) + 12345, (1 << 19) - 1):
        assert tree.load(pfn) == Entry(1 << 18, 18, f"{1 << 18}/18", 0)
    for pfn in (4095, 4096 + 512, 39, 48, 1 << 19):
        assert tree.load(pfn) is None
        assert tree.get(pfn) is None


def test_get_answers_the_value_like_dict_get() -> None:
    tree = build((4096, 9), (40, 3), (1 << 18, 18), (7, 0))
    assert [tree.get(p) for p in (4097, 47, (1 << 18) + 5, 7)] == [
        "4096/9",
        "40/3",
        f"{1 << 18}/18",
        "7/0",
    ]
    assert tree.get(8, default="free") == "free"


# -- overlaps --------------------------------------------------------------------------


def probes(head: int, order: int) -> list[int]:
    """pfns that an entry ``(head, order)`` covers: first, middle, last."""
    size = 1 << order
    return sorted({head, head + size // 2, head + size - 1})


@pytest.mark.parametrize("existing", range(MAX_ORDER + 1))
def test_overlap_for_every_pair_of_orders(existing: int) -> None:
    head = 1 << MAX_ORDER  # aligned for every order
    tree = build((head, existing))
    before = list(tree.items())
    for order in range(MAX_ORDER + 1):
        for pfn in probes(head, existing):
            attempt = pfn >> order << order
            with pytest.raises(Occupied) as caught:
                tree.insert(attempt, "new", order)
            assert caught.value.entry == before[0]
            assert list(tree.items()) == before
        # Just outside on either side is free.
        for neighbour in (head - (1 << order), head + (1 << max(order, existing))):
            tree.insert(neighbour, "neighbour", order)
            tree._check()
            tree.erase(neighbour)
    tree._check()


def test_a_big_entry_over_many_small_ones_names_the_lowest() -> None:
    tree = build((70, 0), (4000, 0), (9, 0), (1 << 11, 6))
    before = list(tree.items())
    with pytest.raises(Occupied) as caught:
        tree.insert(0, "big", 12)
    assert caught.value.entry == Entry(9, 0, "9/0", 0)
    with pytest.raises(Occupied) as caught:
        tree.insert(1 << 11, "mid", 11)
    assert caught.value.entry.head == 1 << 11
    assert list(tree.items()) == before
    tree._check()


def test_a_small_entry_inside_a_big_one_names_the_big_one() -> None:
    tree = build((1 << 24, 18))
    with pytest.raises(Occupied) as caught:
        tree.insert((1 << 24) + 77, "small")
    assert caught.value.entry == Entry(1 << 24, 18, f"{1 << 24}/18", 0)
    assert "occupied" in str(caught.value)


def test_failed_insert_undoes_growth_and_counts() -> None:
    tree = build((5, 0))
    with pytest.raises(Occupied):
        tree.insert(0, "big", 18)
    root = tree._root
    assert root is not None and root.shift == 0
    assert len(tree) == 1 and tree.pages == 1
    tree._check()


def test_neighbours_do_not_overlap() -> None:
    tree = build((0, 9), (512, 9), (1024, 0), (1025, 0), (1026, 1), (1028, 2), (1 << 12, 12))
    assert len(tree) == 7
    assert tree.pages == 512 + 512 + 1 + 1 + 2 + 4 + 4096


# -- store, erase, cmpxchg -------------------------------------------------------------


def test_store_returns_the_replaced_entries_in_order() -> None:
    tree = build((3, 0), (1, 0), (64, 6), (200, 3))
    tree.set_mark(64, 0)
    replaced = tree.store(0, "big", 8, stamp=11)
    assert heads(replaced) == [(1, 0), (3, 0), (64, 6), (200, 3)]
    assert list(tree.items()) == [Entry(0, 8, "big", 11)]
    assert not tree.get_mark(0, 0)
    assert tree.store(256, "free") == []
    tree._check()


def test_store_inside_a_big_entry_replaces_it() -> None:
    tree = build((0, 12))
    assert heads(tree.store(100, "small")) == [(0, 12)]
    assert heads(tree.items()) == [(100, 0)]
    tree._check()


def test_erase_only_at_a_head() -> None:
    tree = build((512, 9), (7, 0))
    assert tree.erase(513) is None and tree.erase(1000) is None and tree.erase(8) is None
    assert len(tree) == 2
    assert tree.erase(512) == Entry(512, 9, "512/9", 0)
    assert tree.erase(512) is None
    assert tree.load(600) is None and len(tree) == 1
    tree._check()


def test_cmpxchg() -> None:
    a, b, c = object(), object(), object()
    tree = RadixTree()
    tree.insert(64, a, 6, stamp=5)
    tree.set_mark(70, 2)
    assert tree.cmpxchg(64, b, c) == Entry(64, 6, a, 5)  # not `b`: unchanged
    assert tree.load(64) == Entry(64, 6, a, 5)
    assert tree.cmpxchg(64, a, b) == Entry(64, 6, a, 5)  # stamp kept
    assert tree.load(100) == Entry(64, 6, b, 5) and tree.get_mark(64, 2)
    assert tree.cmpxchg(64, b, c, stamp=9) == Entry(64, 6, b, 5)
    assert tree.load(64) == Entry(64, 6, c, 9)
    assert tree.cmpxchg(65, c, a) is None and tree.cmpxchg(0, c, a) is None
    assert tree.load(64) == Entry(64, 6, c, 9)
    tree._check()


# -- marks -----------------------------------------------------------------------------


def test_marks_set_get_clear_through_any_covered_pfn() -> None:
    tree = build((512, 9), (3, 0))
    tree.set_mark(700, 1)
    assert tree.get_mark(512, 1) and tree.get_mark(1023, 1)
    assert not tree.get_mark(600, 0) and not tree.get_mark(3, 1)
    tree.clear_mark(513, 1)
    assert not tree.get_mark(512, 1)
    tree.clear_mark(513, 1)  # clearing a clear mark is fine
    for call in (tree.set_mark, tree.clear_mark, tree.get_mark):
        with pytest.raises(KeyError):
            call(4, 0)
    tree._check()


def test_marks_propagate_up_and_are_withdrawn() -> None:
    tree = build((5, 0), (6, 0), (1 << 20, 0))
    root = tree._root
    assert root is not None and root.shift == 18
    tree.set_mark(5, 0)
    tree.set_mark(6, 0)
    assert root.marks[0] == 1 and root.marks[1] == 0
    tree.clear_mark(5, 0)
    assert root.marks[0] == 1  # 6 still marked
    tree.erase(6)
    assert root.marks[0] == 0
    tree.set_mark(1 << 20, 2)
    tree.set_mark(1 << 20, 2)  # setting a set mark is fine
    assert root.marks[2] == 1 << ((1 << 20) >> 18)
    assert heads(tree.marked(2)) == [(1 << 20, 0)]
    tree.insert(1 << 30, "far")  # a new root above carries the mark summary
    assert tree._root is not None and tree._root.marks[2] == 1
    assert heads(tree.marked(2)) == [(1 << 20, 0)]
    tree._check()


def test_marked_skips_unmarked_and_honours_the_range() -> None:
    tree = build(*[(pfn, 0) for pfn in range(0, 4096, 3)], (1 << 16, 12))
    for pfn in (9, 300, 3000):
        tree.set_mark(pfn, 1)
    tree.set_mark((1 << 16) + 5, 1)
    assert heads(tree.marked(1)) == [(9, 0), (300, 0), (3000, 0), (1 << 16, 12)]
    assert heads(tree.marked(1, 10, 3001)) == [(300, 0), (3000, 0)]
    assert heads(tree.marked(1, (1 << 16) + 100)) == [(1 << 16, 12)]
    assert heads(tree.marked(0)) == []


# -- items and counting ----------------------------------------------------------------

MIXED = [(0, 0), (2, 1), (8, 3), (64, 6), (130, 0), (4096, 12), (1 << 18, 18), (1 << 20, 9)]


def test_items_from_any_pfn_resumes_where_a_page_stopped() -> None:
    tree = build(*MIXED)
    everything = list(tree.items())
    assert heads(everything) == MIXED
    for start in list(range(0, 200)) + [4095, 4096, 5000, (1 << 18) + 7, 1 << 19, 1 << 21]:
        expected = [e for e in everything if e.head + (1 << e.order) > start]
        assert list(tree.items(start)) == expected
    # Paginate two at a time.
    pages: list[Entry] = []
    start = 0
    while True:
        batch = list(itertools.islice(tree.items(start), 2))
        if not batch:
            break
        pages += batch
        start = batch[-1].head + (1 << batch[-1].order)
    assert pages == everything


def test_items_range_includes_the_entry_covering_start() -> None:
    tree = build(*MIXED)
    assert heads(tree.items(70, 131)) == [(64, 6), (130, 0)]
    assert heads(tree.items(5000, 5001)) == [(4096, 12)]
    assert heads(tree.items(131, 4096)) == []
    assert heads(tree.items(10, 10)) == []


def test_items_of_dense_and_holey_leaves() -> None:
    tree = RadixTree()
    pfns = [p for p in range(300) if p % 7]
    for p in pfns:
        tree.insert(p, p, stamp=p * 10)
    assert list(tree.items(5, 250)) == [Entry(p, 0, p, p * 10) for p in pfns if 5 <= p < 250]


def test_count_pages_is_clipped_to_the_range() -> None:
    tree = build(*MIXED)
    assert tree.count_pages(0, 1 << 30) == tree.pages
    assert tree.count_pages(1, 3) == 1  # half of (2, 1)
    assert tree.count_pages(10, 100) == 6 + 36
    assert tree.count_pages(5000, 5001) == 1
    assert tree.count_pages((1 << 18) + 10, (1 << 18) + 20) == 10
    assert tree.count_pages(7, 7) == 0
    assert tree.count_entries(1, 3) == 1 and tree.count_entries(10, 100) == 2
    assert tree.count_entries(0, 1 << 30) == len(tree)


def test_count_pages_of_an_aligned_block_uses_node_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tree = RadixTree()
    for pfn in range(1 << 16):
        tree.insert(pfn, "x")
    calls = 0
    real = RadixTree._count

    def counting(self: RadixTree, *args: object) -> int:
        nonlocal calls
        calls += 1
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(RadixTree, "_count", counting)
    assert tree.count_pages(32768, 65536) == 32768
    assert calls <= 2  # the root, then node counts; no leaf is visited
    calls = 0
    assert tree.count_pages(32768 + 5, 65536 - 5) == 32768 - 10
    assert calls <= 2 * 3  # only the two boundary paths descend


# -- stamps ----------------------------------------------------------------------------


def test_a_leaf_keeps_its_stamps_in_its_cells() -> None:
    tree = build((0, 0), (1, 0))
    leaf = tree._leaves[0]
    tree.insert(2, "x", stamp=-7)
    assert leaf.stamps is None and leaf.cells[CHUNK_SIZE + 2] == -7
    assert tree.load(2) == Entry(2, 0, "x", -7) and tree.load(1) == Entry(1, 0, "1/0", 0)
    tree.erase(2)
    assert leaf.cells[CHUNK_SIZE + 2] == 0
    tree._check()


def test_stamps_of_multi_slot_entries_are_compact_until_a_smaller_one_arrives() -> None:
    tree = RadixTree()
    for head in range(0, 4096, 512):
        tree.insert(head, "big", 9, stamp=head + 1)
    node = tree._root
    assert node is not None and node.stamps is not None and len(node.stamps) == 8
    tree.erase(512)
    tree.insert(512, "mid", 7, stamp=99)  # two slots: the array is re-indexed for it
    assert len(node.stamps) == 32
    tree._check()
    assert tree.load(600) == Entry(512, 7, "mid", 99)
    assert tree.load(0) == Entry(0, 9, "big", 1) and tree.load(3583) == Entry(3072, 9, "big", 3073)


def test_stamp_must_fit_64_bits() -> None:
    tree = RadixTree()
    tree.insert(0, "x", stamp=(1 << 63) - 1)
    tree.insert(1, "x", stamp=-(1 << 63))
    with pytest.raises(ValueError):
        tree.insert(2, "x", stamp=1 << 63)
    with pytest.raises(ValueError):
        tree.cmpxchg(0, "x", "y", stamp=1 << 64)


# -- growth and shrinking --------------------------------------------------------------


def test_fill_builds_what_inserting_each_index_builds() -> None:
    filled, inserted = RadixTree(), RadixTree()
    for tree in (filled, inserted):
        tree.insert(0, "big", order=3, stamp=1)  # a leaf with a multi-slot entry
        tree.insert(1 << 20, "far", order=12)
    filled.fill(8, 70_000, "run", stamp=9, marks=(0, 2))
    for pfn in range(8, 70_000):
        inserted.insert(pfn, "run", stamp=9)
        inserted.set_mark(pfn, 0)
        inserted.set_mark(pfn, 2)
    filled._check()
    assert list(filled.items()) == list(inserted.items())
    for mark in range(MARK_COUNT):
        assert list(filled.marked(mark)) == list(inserted.marked(mark))
    assert (len(filled), filled.pages) == (len(inserted), inserted.pages)
    assert filled.count_pages(4096, 8192) == 4096
    assert filled.load(7) == Entry(0, 3, "big", 1)  # the leaf's stamps were refined


def test_fill_over_an_entry_changes_nothing() -> None:
    tree = build((1000, 0))
    with pytest.raises(Occupied) as caught:
        tree.fill(10, 5000, "x")
    assert caught.value.entry.head == 1000
    tree._check()
    assert heads(tree.items()) == [(1000, 0)]
    tree.fill(5, 5, "nothing")
    assert len(tree) == 1


def test_tree_grows_for_large_indices_and_shrinks_back() -> None:
    tree = build((5, 0))
    root = tree._root
    assert root is not None and root.shift == 0
    tree.insert(1 << 40, "far")
    assert tree._root is not None and tree._root.shift == 36
    assert tree.load(1 << 40) == Entry(1 << 40, 0, "far", 0)
    tree._check()
    tree.erase(1 << 40)
    assert tree._root is root
    tree.erase(5)
    assert tree._root is None and tree._leaves == {}
    tree._check()


def test_erasing_frees_empty_nodes() -> None:
    tree = build(*[(pfn, 0) for pfn in range(0, 1 << 14, 97)])
    assert leaf_count(tree) > 100
    for entry in list(tree.items()):
        tree.erase(entry.head)
        tree._check()
    assert tree._root is None and leaf_count(tree) == 0


# -- argument errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.insert(-1, "x"),
        lambda t: t.insert(0, "x", -1),
        lambda t: t.insert(0, "x", MAX_ORDER + 1),
        lambda t: t.insert(3, "x", 1),
        lambda t: t.insert(0, None),
        lambda t: t.store(2, "x", 2),
        lambda t: t.store(0, None),
        lambda t: t.load(-5),
        lambda t: t.erase(-5),
        lambda t: t.cmpxchg(-1, "a", "b"),
        lambda t: t.cmpxchg(0, "a", None),
        lambda t: t.set_mark(0, MARK_COUNT),
        lambda t: t.set_mark(-1, 0),
        lambda t: t.get_mark(0, -1),
        lambda t: t.clear_mark(0, 3),
        lambda t: t.marked(3),
        lambda t: t.items(5, 4),
        lambda t: t.items(-1),
        lambda t: t.count_pages(5, 4),
        lambda t: t.count_entries(-1, 4),
    ],
)
def test_value_errors(call: object) -> None:
    tree = build((0, 0))
    with pytest.raises(ValueError):
        call(tree)  # type: ignore[operator]
    assert heads(tree.items()) == [(0, 0)]


# -- _check must be able to fail -------------------------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda root: setattr(root, "bitmap", root.bitmap ^ (1 << 40)),
        lambda root: setattr(root, "siblings", 0),
        lambda root: setattr(root, "nr_pages", root.nr_pages + 1),
        lambda root: setattr(root, "nr_entries", 0),
        lambda root: setattr(root, "marks", (0b10, 0, 0)),  # a sibling marked
        lambda root: root.cells.__setitem__(63, -1),  # a stray sibling of slot 0
        lambda root: root.cells.__setitem__(8, 7),  # a handle nothing was given
        lambda root: root.cells.__setitem__(8, root.cells[0]),  # uses miscounted
    ],
)
def test_check_catches_corruption(corrupt: object) -> None:
    tree = build((0, 1), (8, 0))
    tree._check()
    corrupt(tree._root)  # type: ignore[operator]
    with pytest.raises(AssertionError):
        tree._check()


def test_check_catches_a_stale_leaf_shortcut() -> None:
    tree = build((0, 0))
    tree._leaves[99] = Node(0, tree._values)
    with pytest.raises(AssertionError):
        tree._check()


# -- the model -------------------------------------------------------------------------

# Indices cluster in a few windows so that entries of all orders collide: near 0,
# at 2**18 (one order-18 slot), past 2**22 and far up at 2**30 (the tree grows).
REGIONS = [0, 1 << 18, (1 << 22) + (1 << 18), 1 << 30]
ANCHORS = [0, 320, 3 * 4096, 1 << 17]
ORDERS = st.one_of(st.integers(0, 3), st.sampled_from([5, 6, 7, 9, 11, 12, 13, 17, 18]))


@st.composite
def heads_and_orders(draw: st.DrawFn) -> tuple[int, int]:
    order = draw(ORDERS)
    anchor = draw(st.sampled_from(ANCHORS)) >> order << order
    head = draw(st.sampled_from(REGIONS)) + anchor + (draw(st.integers(0, 3)) << order)
    return head, order


@st.composite
def pfns(draw: st.DrawFn) -> int:
    head, order = draw(heads_and_orders())
    return head + draw(st.integers(0, (1 << order) - 1))


class Model:
    """head -> [order, value, stamp, marks]; the obvious, slow answers."""

    def __init__(self) -> None:
        self.entries: dict[int, list[object]] = {}

    def entry(self, head: int) -> Entry:
        order, value, stamp, _ = self.entries[head]
        return Entry(head, order, value, stamp)  # type: ignore[arg-type]

    def size(self, head: int) -> int:
        return 1 << self.entries[head][0]  # type: ignore[operator]

    def overlapping(self, start: int, end: int) -> list[int]:
        return sorted(h for h in self.entries if h < end and h + self.size(h) > start)

    def marks(self, head: int) -> set[int]:
        return self.entries[head][3]  # type: ignore[return-value]


class RadixMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tree = RadixTree()
        self.model = Model()
        self.serial = 0

    def value(self) -> str:
        self.serial += 1
        return f"v{self.serial}"

    @rule(where=heads_and_orders(), stamp=st.integers(-(1 << 63), (1 << 63) - 1))
    def insert(self, where: tuple[int, int], stamp: int) -> None:
        head, order = where
        value = self.value()
        clash = self.model.overlapping(head, head + (1 << order))
        if clash:
            with pytest.raises(Occupied) as caught:
                self.tree.insert(head, value, order, stamp)
            assert caught.value.entry == self.model.entry(clash[0])
        else:
            self.tree.insert(head, value, order, stamp)
            self.model.entries[head] = [order, value, stamp, set()]

    @rule(where=heads_and_orders(), stamp=st.sampled_from([0, 1, 1 << 50]))
    def store(self, where: tuple[int, int], stamp: int) -> None:
        head, order = where
        value = self.value()
        clash = self.model.overlapping(head, head + (1 << order))
        assert self.tree.store(head, value, order, stamp) == [self.model.entry(h) for h in clash]
        for h in clash:
            del self.model.entries[h]
        self.model.entries[head] = [order, value, stamp, set()]

    def pick(self, data: st.DataObject) -> int:
        """A pfn: half the time inside an existing entry, else anywhere near the action."""
        if self.model.entries and data.draw(st.booleans()):
            head = data.draw(st.sampled_from(sorted(self.model.entries)))
            return head + data.draw(st.integers(0, self.model.size(head) - 1))
        return data.draw(pfns())

    @rule(start=pfns(), count=st.integers(1, 130), stamped=st.booleans())
    def insert_run(self, start: int, count: int, stamped: bool) -> None:
        """Order-0 entries on every free pfn of a run: dense leaves."""
        for pfn in range(start, start + count):
            if not self.model.overlapping(pfn, pfn + 1):
                stamp = pfn if stamped else 0
                self.tree.insert(pfn, "run", 0, stamp)
                self.model.entries[pfn] = [0, "run", stamp, set()]

    @rule(
        start=pfns(),
        count=st.sampled_from([1, 2, 63, 64, 65, 130, 4097]),
        stamp=st.sampled_from([0, 5, -(1 << 63)]),
        marks=st.sets(st.integers(0, MARK_COUNT - 1), max_size=2),
    )
    def fill(self, start: int, count: int, stamp: int, marks: set[int]) -> None:
        """A run of order-0 entries in one call: all or nothing."""
        value = self.value()
        clash = self.model.overlapping(start, start + count)
        if clash:
            with pytest.raises(Occupied) as caught:
                self.tree.fill(start, start + count, value, stamp, marks)
            assert caught.value.entry == self.model.entry(clash[0])
            return
        self.tree.fill(start, start + count, value, stamp, marks)
        for pfn in range(start, start + count):
            self.model.entries[pfn] = [0, value, stamp, set(marks)]

    @rule(data=st.data())
    def erase(self, data: st.DataObject) -> None:
        pfn = self.pick(data)
        expected = self.model.entry(pfn) if pfn in self.model.entries else None
        assert self.tree.erase(pfn) == expected
        self.model.entries.pop(pfn, None)

    @precondition(lambda self: self.model.entries)
    @rule(data=st.data(), same=st.booleans(), stamp=st.sampled_from([None, 0, 77]))
    def cmpxchg(self, data: st.DataObject, same: bool, stamp: int | None) -> None:
        head = data.draw(st.sampled_from(sorted(self.model.entries)))
        current = self.model.entries[head]
        old = current[1] if same else "nobody"
        new = self.value()
        assert self.tree.cmpxchg(head, old, new, stamp) == self.model.entry(head)
        if same:
            current[1] = new
            if stamp is not None:
                current[2] = stamp

    @rule(data=st.data(), mark=st.integers(0, MARK_COUNT - 1), on=st.booleans())
    def mark(self, data: st.DataObject, mark: int, on: bool) -> None:
        pfn = self.pick(data)
        covering = self.model.overlapping(pfn, pfn + 1)
        if not covering:
            with pytest.raises(KeyError):
                (self.tree.set_mark if on else self.tree.clear_mark)(pfn, mark)
            return
        if on:
            self.tree.set_mark(pfn, mark)
            self.model.marks(covering[0]).add(mark)
        else:
            self.tree.clear_mark(pfn, mark)
            self.model.marks(covering[0]).discard(mark)
        assert self.tree.get_mark(pfn, mark) is on

    @precondition(lambda self: any(e[3] for e in self.model.entries.values()))
    @rule(data=st.data())
    def clear_a_set_mark(self, data: st.DataObject) -> None:
        marked = sorted((h, m) for h, e in self.model.entries.items() for m in self.model.marks(h))
        head, mark = data.draw(st.sampled_from(marked))
        self.tree.clear_mark(head + self.model.size(head) - 1, mark)
        self.model.marks(head).discard(mark)
        assert not self.tree.get_mark(head, mark)

    @rule(data=st.data())
    def load(self, data: st.DataObject) -> None:
        pfn = self.pick(data)
        covering = self.model.overlapping(pfn, pfn + 1)
        expected = self.model.entry(covering[0]) if covering else None
        assert self.tree.load(pfn) == expected
        assert self.tree.get(pfn, "free") == ("free" if expected is None else expected.value)

    @rule(data=st.data(), length=st.sampled_from([1, 2, 63, 64, 500, 4096, 1 << 19, 1 << 31]))
    def ranges(self, data: st.DataObject, length: int) -> None:
        start = self.pick(data)
        end = start + length
        inside = self.model.overlapping(start, end)
        assert list(self.tree.items(start, end)) == [self.model.entry(h) for h in inside]
        assert self.tree.count_entries(start, end) == len(inside)
        clipped = sum(min(h + self.model.size(h), end) - max(h, start) for h in inside)
        assert self.tree.count_pages(start, end) == clipped
        for mark in range(MARK_COUNT):
            marked = [self.model.entry(h) for h in inside if mark in self.model.marks(h)]
            assert list(self.tree.marked(mark, start, end)) == marked

    @invariant()
    def consistent(self) -> None:
        self.tree._check()
        assert len(self.tree) == len(self.model.entries)
        assert self.tree.pages == sum(self.model.size(h) for h in self.model.entries)
        assert list(self.tree.items()) == [self.model.entry(h) for h in sorted(self.model.entries)]


RadixMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_radix_model = RadixMachine.TestCase
