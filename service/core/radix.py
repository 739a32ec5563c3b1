"""A 64-ary radix tree keyed by page frame number, modelled on the Linux XArray.

Vocabulary (the names this module uses, after ``lib/xarray.c``):

index
    A page frame number (pfn): a non-negative int. The tree maps aligned ranges
    of indices to values.
slot
    One of the ``CHUNK_SIZE`` (64) positions of a node. A slot is empty
    (``None``), holds a child node, holds the value of an entry (its canonical
    slot) or holds a sibling.
shift
    A node at shift ``s`` splits its range into 64 slots of ``2**s`` indices each;
    ``index`` falls in slot ``(index >> s) & CHUNK_MASK``. Leaves have shift 0, each
    level up adds ``CHUNK_SHIFT``. The root's shift grows as larger indices
    arrive and shrinks as they leave.
order
    An entry of order ``k`` covers the aligned range ``[head, head + 2**k)``,
    ``0 <= k <= MAX_ORDER``; ``head`` must be a multiple of ``2**k``.
canonical slot
    An entry of order ``k`` lives in the node at shift ``6 * (k // 6)`` and takes
    ``2**(k % 6)`` consecutive slots there. The first one, the canonical slot,
    holds the value. So an order-9 entry costs 8 slots of a shift-6 node, not
    512 leaf slots, and an order-18 entry is one slot of a shift-18 node.
sibling
    Each other slot of a multi-slot entry holds a ``Sibling`` naming the offset
    of the canonical slot (one shared instance per offset). A node's
    ``siblings`` bitmap marks these slots; the run of sibling bits after a
    canonical slot gives the entry's order, so orders are never stored.
mark
    ``MARK_COUNT`` (3) independent bits per entry. A node keeps one bitmap per
    mark: bit ``i`` is set when slot ``i`` is the canonical slot of a marked entry
    or holds a child node with any marked entry below it, so a search for
    marked entries skips unmarked subtrees.
stamp
    A signed 64-bit int per entry (0 by default), kept in a per-node
    ``array('q')`` allocated only when a non-zero stamp arrives in that node. A
    registry uses it for a per-hold number (a start time, doubling as a
    generation) without a Python object per hold.
cell, handle
    A leaf (a shift-0 node, where every entry of order < 6 lives) keeps its slots
    and stamps in one ``array('q')`` of ``2 * CHUNK_SIZE`` ints, its ``cells``, not
    in a list: cell ``i`` is 0 (empty), a *handle* ``h > 0`` for the value
    ``values[h]`` (the tree's table of the distinct values it holds, each counted
    by the entries that use it), or ``-(off + 1)``, a sibling of the entry at
    ``off``; cell ``CHUNK_SIZE + off`` is the stamp of the entry at ``off``. The
    garbage collector does not look inside an array, so a full collection (which
    stops the program while it walks every reference of every tracked object)
    walks a leaf as two objects and a dozen references, not three objects and 64
    slots more (``tests/core/test_collector.py``).

Every node also keeps the number of entries and of pages below it, so counting
the pages held in an aligned range costs O(height), not O(entries).

Errors: ``ValueError`` for a negative index, an order outside ``0..MAX_ORDER``,
an index not aligned to its order, a mark outside ``0..MARK_COUNT-1``, a stamp
outside 64 bits, ``start > end``, or a value that is ``None`` (which, as NULL in
the XArray, means an empty slot); ``Occupied`` when ``insert`` overlaps an entry;
``KeyError`` when a mark is set, cleared or read where no entry is.

The tree is not thread-safe and must not be modified while ``items`` or
``marked`` is being iterated; the registry guards each tree with a lock.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from typing import NamedTuple, NoReturn

__all__ = [
    "CHUNK_MASK",
    "CHUNK_SHIFT",
    "CHUNK_SIZE",
    "MARK_COUNT",
    "MAX_ORDER",
    "Entry",
    "Occupied",
    "RadixTree",
]

CHUNK_SHIFT = 6
CHUNK_SIZE = 1 << CHUNK_SHIFT
CHUNK_MASK = CHUNK_SIZE - 1
MAX_ORDER = 18
MARK_COUNT = 3

_FULL = (1 << CHUNK_SIZE) - 1
_STAMP_MIN = -(1 << 63)
_STAMP_MAX = (1 << 63) - 1
# Fewer entries than this in a leaf window are yielded one by one; more go
# through a C-level zip/compress/map pipeline.
_PIPELINE_MIN = 16

Marks = tuple[int, int, int]
_NO_MARKS: Marks = (0, 0, 0)


class Entry(NamedTuple):
    """One entry: ``value`` held for the pages ``[head, head + 2**order)``."""

    head: int
    order: int
    value: object
    stamp: int


# tuple.__new__(Entry, fields) skips the Python-level Entry.__new__; it is the
# cheapest way to build an Entry and matters on the load and items paths.
_new_entry: Callable[[type[Entry], tuple[int, int, object, int]], Entry] = tuple.__new__


class Occupied(Exception):
    """``insert`` would overlap ``entry`` (the overlapping entry with the lowest head)."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry)
        self.entry = entry

    def __str__(self) -> str:
        e = self.entry
        return f"pages [{e.head}, {e.head + (1 << e.order)}) are occupied"


class Sibling:
    """A non-canonical slot of a multi-slot entry: points at the canonical ``offset``."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def __repr__(self) -> str:
        return f"Sibling({self.offset})"


_SIBLINGS = tuple(Sibling(i) for i in range(CHUNK_SIZE))
# What a leaf has for ``slots``, and an inner node for ``cells`` and ``values``: shared,
# empty, never written to.
_NO_SLOTS: list[object] = []
_NO_CELLS = array("q")
_ZERO_CELLS = array("q", bytes(16 * CHUNK_SIZE))


class Node:
    """One tree node: ``CHUNK_SIZE`` slots covering ``CHUNK_SIZE << shift`` indices.

    A leaf (shift 0) keeps them and its stamps as ``cells`` (see *cell* above; its
    ``slots`` is the shared empty ``_NO_SLOTS``, its ``stamps`` None), resolving
    handles through ``values``, the tree's table; any other node keeps them in the
    list ``slots`` (its ``cells`` is the shared empty ``_NO_CELLS`` and its
    ``values`` is ``_NO_SLOTS``).
    ``bitmap`` has bit ``i`` set when slot ``i`` is not empty, ``siblings`` when it
    holds a sibling. ``marks`` holds one bitmap per mark (the shared
    ``(0, 0, 0)`` when none is set). ``nr_entries`` and ``nr_pages`` count all
    entries below. ``stamps`` is ``None`` or an ``array('q')`` of
    ``CHUNK_SIZE >> stamp_shift`` stamps; an entry at canonical offset ``off``
    keeps its stamp at ``stamps[off >> stamp_shift]``, where ``stamp_shift`` is at
    most the log2 of the slot count of every entry in the node (a node of
    order-9 entries needs 8 stamps, not 64); once allocated the array stays until
    the node is freed. A full node's ``bitmap`` is the one shared ``_FULL`` int.
    """

    __slots__ = (
        "shift",
        "slots",
        "bitmap",
        "siblings",
        "marks",
        "nr_entries",
        "nr_pages",
        "stamps",
        "stamp_shift",
        "cells",
        "values",
    )

    shift: int
    slots: list[object]
    bitmap: int
    siblings: int
    marks: Marks
    nr_entries: int
    nr_pages: int
    stamps: array[int] | None
    stamp_shift: int
    cells: array[int]
    values: list[object]

    def __init__(self, shift: int, values: list[object] | None = None) -> None:
        """A node at ``shift``; a leaf (shift 0) needs its tree's ``values`` table."""
        self.shift = shift
        if shift:
            self.slots = [None] * CHUNK_SIZE
            self.cells = _NO_CELLS
            self.values = _NO_SLOTS
        else:
            assert values is not None
            self.slots = _NO_SLOTS
            self.cells = _ZERO_CELLS[:]
            self.values = values
        self.bitmap = 0
        self.siblings = 0
        self.marks = _NO_MARKS
        self.nr_entries = 0
        self.nr_pages = 0
        self.stamps = None
        self.stamp_shift = 0

    def __repr__(self) -> str:
        return f"Node(shift={self.shift}, entries={self.nr_entries}, pages={self.nr_pages})"


def _span_shift(siblings: int, off: int) -> int:
    """log2 of the slot count of the entry whose canonical slot is ``off``."""
    if not siblings:
        return 0
    run = siblings >> (off + 1)
    # ~run & (run + 1) isolates the lowest clear bit: 1 << (number of siblings).
    return ((~run & (run + 1)).bit_length() - 1).bit_length()


def _entry_at(node: Node, base: int, off: int) -> Entry:
    """The entry whose canonical slot is ``off`` in ``node`` (which starts at ``base``)."""
    shift = node.shift
    if shift:
        stamps = node.stamps
        value = node.slots[off]
        stamp = 0 if stamps is None else stamps[off >> node.stamp_shift]
    else:
        cells = node.cells
        value = node.values[cells[off]]
        stamp = cells[CHUNK_SIZE + off]
    return _new_entry(
        Entry, (base + (off << shift), shift + _span_shift(node.siblings, off), value, stamp)
    )


def _with_mark(marks: Marks, mark: int, bits: int) -> Marks:
    """``marks`` with the bitmap of ``mark`` replaced by ``bits``."""
    m0, m1, m2 = marks
    if mark == 0:
        m0 = bits
    elif mark == 1:
        m1 = bits
    else:
        m2 = bits
    if not (m0 or m1 or m2):
        return _NO_MARKS
    return (m0, m1, m2)


def _min_span_shift(node: Node) -> int:
    """The smallest log2 slot count of the entries in ``node``."""
    siblings = node.siblings
    if not siblings:
        return 0
    canonical = node.bitmap & ~siblings
    smallest = CHUNK_SHIFT
    slots = node.slots
    leaf = not node.shift
    while canonical:
        low = canonical & -canonical
        canonical ^= low
        off = low.bit_length() - 1
        if leaf or type(slots[off]) is not Node:
            span = _span_shift(siblings, off)
            if span < smallest:
                smallest = span
    return smallest if smallest < CHUNK_SHIFT else 0


def _zero_stamps(stamp_shift: int) -> array[int]:
    """A zeroed stamp array sized exactly for ``stamp_shift`` (no over-allocation)."""
    return _ZERO_STAMPS[stamp_shift][:]


_ZERO_STAMPS = tuple(array("q", bytes(8 * (CHUNK_SIZE >> g))) for g in range(CHUNK_SHIFT))


def _set_stamp(node: Node, off: int, stamp: int) -> None:
    """Record ``stamp`` for the entry at canonical ``off`` (allocating the array lazily)."""
    if not node.shift:
        node.cells[CHUNK_SIZE + off] = stamp
        return
    stamps = node.stamps
    if stamps is None:
        if not stamp:
            return
        shift = _min_span_shift(node)
        stamps = node.stamps = _zero_stamps(shift)
        node.stamp_shift = shift
    stamps[off >> node.stamp_shift] = stamp


def _refine_stamps(node: Node, span_shift: int) -> None:
    """Re-index ``node.stamps`` at a finer ``span_shift`` before a smaller entry arrives."""
    old = node.stamps
    assert old is not None
    old_shift = node.stamp_shift
    new = _zero_stamps(span_shift)
    canonical = node.bitmap & ~node.siblings
    while canonical:
        low = canonical & -canonical
        canonical ^= low
        off = low.bit_length() - 1
        new[off >> span_shift] = old[off >> old_shift]
    node.stamps = new
    node.stamp_shift = span_shift


def _path_base(path: list[tuple[Node, int]]) -> int:
    """Index of the first slot of the node reached through ``path``."""
    base = 0
    for parent, off in path:
        base += off << parent.shift
    return base


def _check_index(index: int, order: int = 0) -> None:
    if index < 0:
        raise ValueError(f"index must be non-negative, got {index}")
    if not 0 <= order <= MAX_ORDER:
        raise ValueError(f"order must be in 0..{MAX_ORDER}, got {order}")
    if index & ((1 << order) - 1):
        raise ValueError(f"index {index} is not aligned to order {order}")


def _check_value(value: object) -> None:
    if value is None or type(value) is Node or type(value) is Sibling:
        raise ValueError("None (and the tree's own node types) cannot be stored")


def _check_stamp(stamp: int) -> None:
    if not _STAMP_MIN <= stamp <= _STAMP_MAX:
        raise ValueError(f"stamp must fit in 64 signed bits, got {stamp}")


def _check_mark(mark: int) -> None:
    if not 0 <= mark < MARK_COUNT:
        raise ValueError(f"mark must be in 0..{MARK_COUNT - 1}, got {mark}")


def _check_range(start: int, end: int | None) -> None:
    if start < 0:
        raise ValueError(f"start must be non-negative, got {start}")
    if end is not None and start > end:
        raise ValueError(f"start {start} is after end {end}")


class RadixTree:
    """A pfn-indexed radix tree of multi-order entries with marks, stamps and counts.

    >>> tree = RadixTree()
    >>> tree.insert(512, "a", order=9)
    >>> tree.insert(7, "b", stamp=42)
    >>> tree.load(700)
    Entry(head=512, order=9, value='a', stamp=0)
    >>> len(tree), tree.pages
    (2, 513)
    """

    __slots__ = ("_root", "_leaves", "_values", "_uses", "_handles", "_free")

    def __init__(self) -> None:
        self._root: Node | None = None
        # Shortcut for load: index >> CHUNK_SHIFT -> the leaf (shift-0 node)
        # covering it, kept in step with every leaf created or freed.
        self._leaves: dict[int, Node] = {}
        # The values leaves hold, by handle (0: none), and how many leaf entries
        # use each; id(value) -> handle; handles free for reuse.
        self._values: list[object] = [None]
        self._uses: list[int] = [0]
        self._handles: dict[int, int] = {}
        self._free: list[int] = []

    def _node(self, shift: int) -> Node:
        """A new empty node at ``shift`` (a leaf shares the tree's value table)."""
        return Node(shift, self._values)

    def _intern(self, value: object, uses: int = 1) -> int:
        """The handle of ``value`` in leaves, counted ``uses`` more times. Cost: O(1)."""
        handle = self._handles.get(id(value))
        if handle is None:
            if self._free:
                handle = self._free.pop()
                self._values[handle] = value
            else:
                handle = len(self._values)
                self._values.append(value)
                self._uses.append(0)
            self._handles[id(value)] = handle
        self._uses[handle] += uses
        return handle

    def _release(self, handle: int) -> None:
        """One leaf entry less uses ``handle``; the last one frees it. Cost: O(1)."""
        uses = self._uses[handle] - 1
        self._uses[handle] = uses
        if not uses:
            del self._handles[id(self._values[handle])]
            self._values[handle] = None
            self._free.append(handle)

    def __len__(self) -> int:
        """Number of entries. Runtime complexity: O(1)."""
        root = self._root
        return 0 if root is None else root.nr_entries

    @property
    def pages(self) -> int:
        """Number of pages covered by all entries. Runtime complexity: O(1)."""
        root = self._root
        return 0 if root is None else root.nr_pages

    def __repr__(self) -> str:
        return f"RadixTree(entries={len(self)}, pages={self.pages})"

    # -- lookup -----------------------------------------------------------

    def load(self, index: int) -> Entry | None:
        """The entry covering ``index`` (whatever its order), or None.

        Runtime complexity: O(1) for an index in a leaf (one dict lookup),
        O(height) otherwise.

        >>> tree = RadixTree()
        >>> tree.insert(64, "x", order=6, stamp=5)
        >>> tree.load(100)
        Entry(head=64, order=6, value='x', stamp=5)
        >>> tree.load(10) is None
        True
        """
        leaf = self._leaves.get(index >> CHUNK_SHIFT)
        if leaf is not None:
            # A leaf exists for this chunk, so no entry of order >= 6 covers it.
            off = index & CHUNK_MASK
            cells = leaf.cells
            handle = cells[off]
            if not handle:
                return None
            if not leaf.siblings:
                return _new_entry(Entry, (index, 0, leaf.values[handle], cells[CHUNK_SIZE + off]))
            if handle < 0:
                off = -handle - 1
            return _entry_at(leaf, index & ~CHUNK_MASK, off)
        return self._descend_load(index)

    def get(self, index: int, default: object = None) -> object:
        """The value of the entry covering ``index``, or ``default``: what ``dict.get``
        and the kernel's ``xa_load`` answer, without building an ``Entry``.

        Runtime complexity: O(1) for an index in a leaf (one dict lookup),
        O(height) otherwise.

        >>> tree = RadixTree()
        >>> tree.insert(64, "x", order=1)
        >>> tree.get(65), tree.get(66)
        ('x', None)
        """
        leaf = self._leaves.get(index >> CHUNK_SHIFT)
        if leaf is not None:
            cells = leaf.cells
            handle = cells[index & CHUNK_MASK]
            if not handle:
                return default
            if handle < 0:
                handle = cells[-handle - 1]
            return leaf.values[handle]
        entry = self._descend_load(index)
        return default if entry is None else entry.value

    def _descend_load(self, index: int) -> Entry | None:
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        node = self._root
        if node is None or index >> (node.shift + CHUNK_SHIFT):
            return None
        while True:
            shift = node.shift
            # A leaf would be in _leaves: this path ends above the leaves.
            assert shift, "a leaf missing from the leaf shortcut"
            off = (index >> shift) & CHUNK_MASK
            slot = node.slots[off]
            if slot is None:
                return None
            if type(slot) is Node:
                node = slot
                continue
            if type(slot) is Sibling:
                off = slot.offset
            span = shift + CHUNK_SHIFT
            return _entry_at(node, index >> span << span, off)

    def _find(self, index: int) -> tuple[list[tuple[Node, int]], Node, int] | None:
        """Path to the entry covering ``index``: ([(ancestor, offset)...], node, canonical)."""
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        node = self._root
        if node is None or index >> (node.shift + CHUNK_SHIFT):
            return None
        path: list[tuple[Node, int]] = []
        while True:
            off = (index >> node.shift) & CHUNK_MASK
            if not node.shift:
                handle = node.cells[off]
                if not handle:
                    return None
                return path, node, -handle - 1 if handle < 0 else off
            slot = node.slots[off]
            if slot is None:
                return None
            if type(slot) is Node:
                path.append((node, off))
                node = slot
                continue
            if type(slot) is Sibling:
                off = slot.offset
            return path, node, off

    def _find_head(self, index: int) -> tuple[list[tuple[Node, int]], Node, int] | None:
        """Like ``_find`` but only for the entry whose head is ``index``."""
        found = self._find(index)
        if found is None:
            return None
        _, node, off = found
        shift = node.shift
        if (index >> shift) & CHUNK_MASK != off or index & ((1 << shift) - 1):
            return None
        return found

    # -- insertion --------------------------------------------------------

    def insert(self, index: int, value: object, order: int = 0, stamp: int = 0) -> None:
        """Add ``value`` for the pages ``[index, index + 2**order)``.

        Raises ``Occupied`` (carrying the overlapping entry with the lowest
        head) if any of those pages is covered, leaving the tree unchanged.

        Runtime complexity: O(height).

        >>> tree = RadixTree()
        >>> tree.insert(0, "big", order=12)
        >>> try:
        ...     tree.insert(4095, "small")
        ... except Occupied as e:
        ...     print(e.entry)
        Entry(head=0, order=12, value='big', stamp=0)
        """
        _check_index(index, order)
        _check_value(value)
        _check_stamp(stamp)
        entry_shift = order - order % CHUNK_SHIFT
        self._grow(index, entry_shift)
        pages = 1 << order
        node = self._root
        assert node is not None
        # Ancestors' counts are bumped on the way down; an overlap (the rare
        # case) undoes them, which saves keeping a path.
        while True:
            shift = node.shift
            if shift == entry_shift:
                break
            off = (index >> shift) & CHUNK_MASK
            slot = node.slots[off]
            if slot is None:
                slot = self._node(shift - CHUNK_SHIFT)
                node.slots[off] = slot
                node.bitmap |= 1 << off
                if not slot.shift:
                    self._leaves[index >> CHUNK_SHIFT] = slot
            elif type(slot) is not Node:
                # An entry of a higher order covers index.
                if type(slot) is Sibling:
                    off = slot.offset
                span = shift + CHUNK_SHIFT
                self._fail(index, node, pages, _entry_at(node, index >> span << span, off))
            node.nr_entries += 1
            node.nr_pages += pages
            node = slot
        off = (index >> entry_shift) & CHUNK_MASK
        span_shift = order - entry_shift
        window = ((1 << (1 << span_shift)) - 1) << off
        taken = node.bitmap & window
        if taken:
            low = taken & -taken
            first = low.bit_length() - 1
            span = entry_shift + CHUNK_SHIFT
            base = index >> span << span
            if not entry_shift:
                handle = node.cells[first]
                if handle < 0:
                    first = -handle - 1
                conflict = _entry_at(node, base, first)
            else:
                slot = node.slots[first]
                if type(slot) is Node:
                    conflict = self._first_entry(slot, base + (first << entry_shift))
                else:
                    if type(slot) is Sibling:
                        first = slot.offset
                    conflict = _entry_at(node, base, first)
            self._fail(index, node, pages, conflict)
        if not entry_shift:
            cells = node.cells
            cells[off] = self._intern(value)
            if span_shift:
                for i in range(off + 1, off + (1 << span_shift)):
                    cells[i] = -off - 1
                node.siblings |= window ^ (1 << off)
        else:
            slots = node.slots
            slots[off] = value
            if span_shift:
                sibling = _SIBLINGS[off]
                for i in range(off + 1, off + (1 << span_shift)):
                    slots[i] = sibling
                node.siblings |= window ^ (1 << off)
        bitmap = node.bitmap | window
        # A full node shares one int for its bitmap (saves 36 bytes a node).
        node.bitmap = _FULL if bitmap == _FULL else bitmap
        node.nr_entries += 1
        node.nr_pages += pages
        if node.stamps is not None or stamp:
            if node.stamps is not None and span_shift < node.stamp_shift:
                _refine_stamps(node, span_shift)
            _set_stamp(node, off, stamp)

    def fill(
        self, start: int, end: int, value: object, stamp: int = 0, marks: Iterable[int] = ()
    ) -> None:
        """Add an order-0 entry of ``value`` (with ``stamp`` and ``marks``) at every index
        of ``[start, end)``: what ``end - start`` calls of ``insert`` would build, built a
        leaf at a time (slots, stamps and mark bits as slices and bit windows; each
        node's counts bumped once).

        Raises ``Occupied`` (the overlapping entry with the lowest head) if any index
        of the range is covered, leaving the tree unchanged.

        Runtime complexity: O(height + (end - start) / CHUNK_SIZE) node visits; the
        per-index work is slice copies in C.

        >>> tree = RadixTree()
        >>> tree.fill(60, 200, "a", stamp=7, marks=(1,))
        >>> len(tree), tree.load(130), tree.get_mark(199, 1)
        (140, Entry(head=130, order=0, value='a', stamp=7), True)
        """
        _check_range(start, end)
        _check_value(value)
        _check_stamp(stamp)
        wanted = tuple(sorted(set(marks)))
        for mark in wanted:
            _check_mark(mark)
        if start >= end:
            return
        conflict = next(self._walk(start, end, -1), None)
        if conflict is not None:
            raise Occupied(conflict)
        self._grow(end - 1, 0)
        root = self._root
        assert root is not None
        self._fill(root, 0, start, end, value, stamp, wanted)

    def _fill(
        self,
        node: Node,
        base: int,
        start: int,
        end: int,
        value: object,
        stamp: int,
        marks: tuple[int, ...],
    ) -> None:
        """``fill`` below ``node`` (which starts at ``base``) for ``[start, end)``
        clipped to it; every slot on the way is empty or a node (``fill`` checked)."""
        count = end - start
        node.nr_entries += count
        node.nr_pages += count
        shift = node.shift
        if not shift:
            first = start - base
            window = ((1 << count) - 1) << first
            node.cells[first : first + count] = array("q", (self._intern(value, count),)) * count
            bitmap = node.bitmap | window
            node.bitmap = _FULL if bitmap == _FULL else bitmap
            if stamp:  # else the stamps of empty cells are 0 already
                at = CHUNK_SIZE + first
                node.cells[at : at + count] = array("q", (stamp,)) * count
            for mark in marks:
                node.marks = _with_mark(node.marks, mark, node.marks[mark] | window)
            return
        slots = node.slots
        size = 1 << shift
        child_shift = shift - CHUNK_SHIFT
        for off in range((start - base) >> shift, ((end - 1 - base) >> shift) + 1):
            child_base = base + (off << shift)
            child = slots[off]
            if child is None:
                child = slots[off] = self._node(child_shift)
                bitmap = node.bitmap | 1 << off
                node.bitmap = _FULL if bitmap == _FULL else bitmap
                if not child_shift:
                    self._leaves[child_base >> CHUNK_SHIFT] = child
            assert type(child) is Node
            lo = start if start > child_base else child_base
            hi = end if end < child_base + size else child_base + size
            self._fill(child, child_base, lo, hi, value, stamp, marks)
            for mark in marks:
                node.marks = _with_mark(node.marks, mark, node.marks[mark] | 1 << off)

    def _fail(self, index: int, stop: Node, pages: int, conflict: Entry) -> NoReturn:
        """Undo the counts ``insert`` bumped above ``stop``, then raise Occupied."""
        node = self._root
        while node is not stop:
            assert node is not None
            node.nr_entries -= 1
            node.nr_pages -= pages
            slot = node.slots[(index >> node.shift) & CHUNK_MASK]
            assert type(slot) is Node
            node = slot
        self._shrink()
        raise Occupied(conflict)

    def _first_entry(self, node: Node, base: int) -> Entry:
        """The lowest entry below ``node`` (non-empty, starting at ``base``)."""
        while True:
            canonical = node.bitmap & ~node.siblings
            low = canonical & -canonical
            off = low.bit_length() - 1
            if not node.shift:
                return _entry_at(node, base, off)
            slot = node.slots[off]
            if type(slot) is Node:
                base += off << node.shift
                node = slot
                continue
            return _entry_at(node, base, off)

    def _grow(self, index: int, entry_shift: int) -> None:
        """Raise the root until it covers ``index`` at a shift >= ``entry_shift``."""
        root = self._root
        if root is None:
            shift = entry_shift
            while index >> (shift + CHUNK_SHIFT):
                shift += CHUNK_SHIFT
            root = self._root = self._node(shift)
            if not shift:
                self._leaves[0] = root
            return
        while root.shift < entry_shift or index >> (root.shift + CHUNK_SHIFT):
            top = Node(root.shift + CHUNK_SHIFT)
            top.slots[0] = root
            top.bitmap = 1
            top.nr_entries = root.nr_entries
            top.nr_pages = root.nr_pages
            m0, m1, m2 = root.marks
            if m0 or m1 or m2:
                top.marks = (1 if m0 else 0, 1 if m1 else 0, 1 if m2 else 0)
            root = top
        self._root = root

    def _shrink(self) -> None:
        """Drop root levels whose only occupied slot 0 is a node (as xas_shrink)."""
        root = self._root
        while root is not None:
            if not root.bitmap:
                if not root.shift:
                    del self._leaves[0]
                root = None
                break
            if not root.shift:
                break
            child = root.slots[0]
            if root.bitmap != 1 or type(child) is not Node:
                break
            root.slots[0] = None
            root = child
        self._root = root

    def store(self, index: int, value: object, order: int = 0, stamp: int = 0) -> list[Entry]:
        """Put ``value`` on ``[index, index + 2**order)``, erasing whatever overlaps.

        Returns the erased entries in ascending order (their marks are dropped;
        the new entry starts unmarked).

        Runtime complexity: O(height * (1 + k)) for k replaced entries.

        >>> tree = RadixTree()
        >>> tree.insert(1, "a")
        >>> tree.insert(3, "b")
        >>> [e.value for e in tree.store(0, "c", order=2)]
        ['a', 'b']
        >>> list(tree.items())
        [Entry(head=0, order=2, value='c', stamp=0)]
        """
        _check_index(index, order)
        _check_value(value)
        _check_stamp(stamp)
        replaced = list(self._walk(index, index + (1 << order), -1))
        for entry in replaced:
            found = self._find_head(entry.head)
            assert found is not None
            self._remove(*found)
        self.insert(index, value, order, stamp)
        return replaced

    def cmpxchg(
        self, index: int, old: object, new: object, stamp: int | None = None
    ) -> Entry | None:
        """If the entry whose head is ``index`` holds ``old`` (``is``), make it hold ``new``.

        The order and marks are kept; the stamp is replaced when ``stamp`` is
        given. Returns the entry as it was before (compare its value with
        ``old`` to learn whether the exchange happened), or None when no entry
        has that head.

        Runtime complexity: O(height).

        >>> tree = RadixTree()
        >>> a, b = "a", "b"
        >>> tree.insert(8, a, order=3)
        >>> tree.cmpxchg(8, a, b, stamp=9).value
        'a'
        >>> tree.load(9)
        Entry(head=8, order=3, value='b', stamp=9)
        """
        _check_index(index)
        _check_value(new)
        if stamp is not None:
            _check_stamp(stamp)
        found = self._find_head(index)
        if found is None:
            return None
        _, node, off = found
        shift = node.shift
        previous = _entry_at(node, index & ~((CHUNK_SIZE << shift) - 1), off)
        if previous.value is old:
            if shift:
                node.slots[off] = new
            else:
                cells = node.cells
                handle = cells[off]
                cells[off] = self._intern(new)
                self._release(handle)
            if stamp is not None:
                _set_stamp(node, off, stamp)
        return previous

    # -- removal ----------------------------------------------------------

    def erase(self, index: int) -> Entry | None:
        """Remove the entry whose head is ``index``; return it, or None.

        An index inside an entry but not its head removes nothing. Emptied
        nodes are freed and the root shrinks.

        Runtime complexity: O(height).
        """
        _check_index(index)
        found = self._find_head(index)
        if found is None:
            return None
        return self._remove(*found)

    def _remove(self, path: list[tuple[Node, int]], node: Node, off: int) -> Entry:
        shift = node.shift
        entry = _entry_at(node, _path_base(path), off)
        slots_taken = 1 << (entry.order - shift)
        window = ((1 << slots_taken) - 1) << off
        if shift:
            slots = node.slots
            for i in range(off, off + slots_taken):
                slots[i] = None
        else:
            cells = node.cells
            self._release(cells[off])
            cells[off : off + slots_taken] = _ZERO_CELLS[:slots_taken]
            cells[CHUNK_SIZE + off] = 0
        node.bitmap &= ~window
        node.siblings &= ~window
        if node.stamps is not None:
            node.stamps[off >> node.stamp_shift] = 0
        bit = 1 << off
        marks = node.marks
        cleared = [m for m in range(MARK_COUNT) if marks[m] & bit]
        for m in cleared:
            node.marks = _with_mark(node.marks, m, node.marks[m] & ~bit)
        pages = 1 << entry.order
        node.nr_entries -= 1
        node.nr_pages -= pages
        for parent, _ in path:
            parent.nr_entries -= 1
            parent.nr_pages -= pages
        child = node
        for parent, poff in reversed(path):
            bit = 1 << poff
            if not child.bitmap:
                parent.slots[poff] = None
                parent.bitmap &= ~bit
                if not child.shift:
                    del self._leaves[entry.head >> CHUNK_SHIFT]
                pmarks = parent.marks
                cleared = [m for m in range(MARK_COUNT) if pmarks[m] & bit]
            else:
                cleared = [m for m in cleared if not child.marks[m]]
                if not cleared:
                    break
            for m in cleared:
                parent.marks = _with_mark(parent.marks, m, parent.marks[m] & ~bit)
            child = parent
        self._shrink()
        return entry

    # -- marks ------------------------------------------------------------

    def set_mark(self, index: int, mark: int) -> None:
        """Set ``mark`` on the entry covering ``index``; KeyError if none does.

        Runtime complexity: O(height).

        >>> tree = RadixTree()
        >>> tree.insert(0, "a", order=1)
        >>> tree.set_mark(1, 2)
        >>> tree.get_mark(0, 2), tree.get_mark(0, 0)
        (True, False)
        """
        _check_mark(mark)
        leaf = self._leaves.get(index >> CHUNK_SHIFT)
        if leaf is not None and leaf.marks[mark]:
            # Fast path: this leaf already carries the mark, so every ancestor does too;
            # only the entry's own bit changes.
            off = index & CHUNK_MASK
            handle = leaf.cells[off]
            if not handle:
                raise KeyError(index)
            if handle < 0:
                off = -handle - 1
            leaf.marks = _with_mark(leaf.marks, mark, leaf.marks[mark] | 1 << off)
            return
        path, node, off = self._found(index)
        bit = 1 << off
        if node.marks[mark] & bit:
            return
        node.marks = _with_mark(node.marks, mark, node.marks[mark] | bit)
        for parent, poff in reversed(path):
            bit = 1 << poff
            bits = parent.marks[mark]
            if bits & bit:
                break
            parent.marks = _with_mark(parent.marks, mark, bits | bit)

    def clear_mark(self, index: int, mark: int) -> None:
        """Clear ``mark`` on the entry covering ``index``; KeyError if none does.

        Runtime complexity: O(height).
        """
        _check_mark(mark)
        path, node, off = self._found(index)
        bit = 1 << off
        if not node.marks[mark] & bit:
            return
        node.marks = _with_mark(node.marks, mark, node.marks[mark] & ~bit)
        child = node
        for parent, poff in reversed(path):
            if child.marks[mark]:
                break
            parent.marks = _with_mark(parent.marks, mark, parent.marks[mark] & ~(1 << poff))
            child = parent

    def get_mark(self, index: int, mark: int) -> bool:
        """Whether the entry covering ``index`` has ``mark``; KeyError if none covers it.

        Runtime complexity: O(height).
        """
        _check_mark(mark)
        _, node, off = self._found(index)
        return bool(node.marks[mark] >> off & 1)

    def _found(self, index: int) -> tuple[list[tuple[Node, int]], Node, int]:
        found = self._find(index)
        if found is None:
            raise KeyError(index)
        return found

    # -- iteration --------------------------------------------------------

    def items(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        """Entries intersecting ``[start, end)`` in ascending order of head.

        An entry that starts before ``start`` but covers it comes first. The
        iterator is lazy; to page through a large range call again with
        ``start = last.head + 2**last.order``.

        Runtime complexity: O(height + k) for k entries yielded.

        >>> tree = RadixTree()
        >>> tree.insert(0, "a", order=4)
        >>> tree.insert(20, "b")
        >>> [(e.head, e.order) for e in tree.items(5, 21)]
        [(0, 4), (20, 0)]
        """
        _check_range(start, end)
        return self._walk(start, end, -1)

    def marked(self, mark: int, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        """Entries with ``mark`` intersecting ``[start, end)``, ascending.

        Subtrees without the mark are skipped through the node mark bitmaps.

        Runtime complexity: O(height * (1 + k)) for k entries yielded.

        >>> tree = RadixTree()
        >>> for pfn in range(4):
        ...     tree.insert(pfn, pfn)
        >>> tree.set_mark(2, 1)
        >>> [e.head for e in tree.marked(1)]
        [2]
        """
        _check_mark(mark)
        _check_range(start, end)
        return self._walk(start, end, mark)

    def _walk(self, start: int, end: int | None, mark: int) -> Iterator[Entry]:
        """Entries intersecting [start, end): all of them (mark < 0) or those marked."""
        root = self._root
        if root is None:
            return
        top = CHUNK_SIZE << root.shift
        if end is None or end > top:
            end = top
        if start >= end:
            return
        stack: list[tuple[Node, int, int]] = []
        node = root
        base = 0
        while True:
            # Entering node (which starts at base): pick the slots to visit.
            shift = node.shift
            slots = node.slots
            siblings = node.siblings
            pending = node.bitmap & ~siblings if mark < 0 else node.marks[mark]
            first = 0
            last = CHUNK_MASK
            if start > base or base + (CHUNK_SIZE << shift) > end:
                # A boundary node: clip the slots to [start, end).
                if start > base:
                    first = (start - base) >> shift
                last = (end - 1 - base) >> shift
                if last > CHUNK_MASK:
                    last = CHUNK_MASK
                pending = (pending >> first << first) & ((2 << last) - 1)
            if not shift:
                # A leaf: every entry it yields comes from here (then its parent, if
                # any, is resumed below).
                cells = node.cells
                values = node.values
                if first and siblings >> first & 1:
                    # start falls inside an entry whose canonical slot is before it.
                    off = -cells[first] - 1
                    if mark < 0 or node.marks[mark] >> off & 1:
                        yield _entry_at(node, base, off)
                if not siblings and mark < 0 and pending.bit_count() >= _PIPELINE_MIN:
                    # Order-0 entries only: build them in C.
                    hi = last + 1
                    chunk = cells[first:hi]
                    rows: Iterator[tuple[int, int, object, int]] = zip(
                        range(base + first, base + hi),
                        repeat(0),
                        map(values.__getitem__, chunk),
                        cells[CHUNK_SIZE + first : CHUNK_SIZE + hi],
                    )
                    if pending >> first != (1 << (hi - first)) - 1:
                        rows = compress(rows, chunk)  # handle 0: an empty cell
                    yield from map(_new_entry, repeat(Entry), rows)
                    pending = 0
                while pending:
                    low = pending & -pending
                    pending ^= low
                    off = low.bit_length() - 1
                    if siblings:
                        run = siblings >> (off + 1)
                        order = ((~run & (run + 1)).bit_length() - 1).bit_length()
                    else:
                        order = 0
                    yield _new_entry(
                        Entry,
                        (
                            base + off,
                            order,
                            values[cells[off]],
                            cells[CHUNK_SIZE + off],
                        ),
                    )
            elif first and siblings >> first & 1:
                # start falls inside an entry whose canonical slot is before it.
                slot = slots[first]
                assert type(slot) is Sibling
                if mark < 0 or node.marks[mark] >> slot.offset & 1:
                    yield _entry_at(node, base, slot.offset)
            stamps = node.stamps
            while True:
                if pending:
                    low = pending & -pending
                    pending ^= low
                    off = low.bit_length() - 1
                    slot = slots[off]
                    if type(slot) is Node:
                        if slot.nr_entries == 1:
                            # A subtree of one entry, as in sparse trees: no push.
                            entry = self._first_entry(slot, base + (off << shift))
                            if entry.head < end and entry.head + (1 << entry.order) > start:
                                yield entry
                            continue
                        stack.append((node, base, pending))
                        node = slot
                        base += off << shift
                        break
                    if siblings:
                        run = siblings >> (off + 1)
                        order = shift + ((~run & (run + 1)).bit_length() - 1).bit_length()
                    else:
                        order = shift
                    yield _new_entry(
                        Entry,
                        (
                            base + (off << shift),
                            order,
                            slot,
                            0 if stamps is None else stamps[off >> node.stamp_shift],
                        ),
                    )
                elif stack:
                    node, base, pending = stack.pop()
                    shift = node.shift
                    slots = node.slots
                    siblings = node.siblings
                    stamps = node.stamps
                else:
                    return

    # -- counting ---------------------------------------------------------

    def count_pages(self, start: int, end: int) -> int:
        """Pages of ``[start, end)`` covered by entries (entries clipped to the range).

        Fully covered nodes answer from their page count, so an aligned range
        costs O(height); a ragged one descends only into its two boundary nodes.

        Runtime complexity: O(height) (at most CHUNK_SIZE slots per level).

        >>> tree = RadixTree()
        >>> tree.insert(0, "a", order=9)
        >>> tree.count_pages(0, 32768), tree.count_pages(500, 600)
        (512, 12)
        """
        _check_range(start, end)
        root = self._root
        if root is None or start >= end:
            return 0
        return self._count(root, 0, start, end, True)

    def count_entries(self, start: int, end: int) -> int:
        """Entries intersecting ``[start, end)``.

        Runtime complexity: O(height) (at most CHUNK_SIZE slots per level).
        """
        _check_range(start, end)
        root = self._root
        if root is None or start >= end:
            return 0
        return self._count(root, 0, start, end, False)

    def _count(self, node: Node, base: int, start: int, end: int, pages: bool) -> int:
        shift = node.shift
        if start <= base and base + (CHUNK_SIZE << shift) <= end:
            return node.nr_pages if pages else node.nr_entries
        slots = node.slots
        siblings = node.siblings
        first = (start - base) >> shift if start > base else 0
        last = (end - 1 - base) >> shift
        if last > CHUNK_MASK:
            last = CHUNK_MASK
        pending = (node.bitmap & ~siblings) >> first << first & ((2 << last) - 1)
        total = 0
        if first and siblings >> first & 1:
            if shift:
                slot = slots[first]
                assert type(slot) is Sibling
                pending |= 1 << slot.offset
            else:
                pending |= 1 << (-node.cells[first] - 1)
        size = 1 << shift
        while pending:
            low = pending & -pending
            pending ^= low
            off = low.bit_length() - 1
            slot = slots[off] if shift else None  # a leaf has entries only
            head = base + (off << shift)
            if type(slot) is Node:
                if start <= head and head + size <= end:
                    total += slot.nr_pages if pages else slot.nr_entries
                else:
                    total += self._count(slot, head, start, end, pages)
            elif pages:
                tail = head + (size << _span_shift(siblings, off))
                total += (tail if tail < end else end) - (head if head > start else start)
            else:
                total += 1
        return total

    # -- invariants -------------------------------------------------------

    def _check(self) -> None:
        """Assert every structural invariant. Runtime complexity: O(n)."""
        root = self._root
        leaves: dict[int, Node] = {}
        if root is None:
            assert not self._leaves, "leaf shortcut outlived the tree"
            return
        assert root.shift % CHUNK_SHIFT == 0 and root.shift >= 0
        assert root.bitmap, "empty root"
        assert not (root.shift and root.bitmap == 1 and type(root.slots[0]) is Node), (
            "root can shrink"
        )
        self._check_node(root, 0, leaves)
        assert leaves == self._leaves, "leaf shortcut out of step with the leaves"
        assert all(self._leaves[k] is leaves[k] for k in leaves)
        self._check_handles(leaves.values())

    def _check_handles(self, leaves: Iterable[Node]) -> None:
        """Every handle in a leaf is counted once per entry; free handles hold nothing."""
        values = self._values
        uses = [0] * len(values)
        for leaf in leaves:
            canonical = leaf.bitmap & ~leaf.siblings
            for off in range(CHUNK_SIZE):
                if canonical >> off & 1:
                    uses[leaf.cells[off]] += 1
        assert uses == self._uses, "handle use counts wrong"
        assert len(self._uses) == len(values) and values[0] is None
        live = {h for h in range(1, len(values)) if uses[h]}
        assert live.isdisjoint(self._free) and len(live) + len(self._free) == len(values) - 1
        assert all(values[h] is None for h in self._free), "a freed handle keeps its value"
        assert self._handles == {id(values[h]): h for h in live}, "handle index wrong"

    def _check_node(self, node: Node, base: int, leaves: dict[int, Node]) -> tuple[int, int]:
        shift = node.shift
        if shift:
            slots = node.slots
            assert node.cells is _NO_CELLS and node.values is _NO_SLOTS
        else:
            # The cells as the slots they stand for, then checked like any node's.
            cells = node.cells
            assert isinstance(cells, array) and cells.typecode == "q"
            assert len(cells) == 2 * CHUNK_SIZE and node.slots is _NO_SLOTS
            assert node.stamps is None, "a leaf's stamps are in its cells"
            canonical = node.bitmap & ~node.siblings
            for i in range(CHUNK_SIZE):
                if cells[CHUNK_SIZE + i]:
                    assert canonical >> i & 1, "stamp without an entry"
            assert node.values is self._values, "a leaf with another tree's values"
            handles = cells[:CHUNK_SIZE]
            assert all(-CHUNK_SIZE <= h < len(self._values) for h in handles), "a bad cell"
            assert all(h <= 0 or self._uses[h] for h in handles), "a cell with a free handle"
            slots = [
                None if not h else _SIBLINGS[-h - 1] if h < 0 else self._values[h] for h in handles
            ]
        assert len(slots) == CHUNK_SIZE
        assert base % (CHUNK_SIZE << shift) == 0
        assert isinstance(node.marks, tuple) and len(node.marks) == MARK_COUNT
        assert any(node.marks) or node.marks is _NO_MARKS, "unshared all-zero marks"
        if not shift:
            leaves[base >> CHUNK_SHIFT] = node
        bitmap = siblings = 0
        entries = pages = 0
        marks = [0] * MARK_COUNT
        spans: list[int] = []
        off = 0
        while off < CHUNK_SIZE:
            slot = slots[off]
            bit = 1 << off
            if slot is None:
                off += 1
                continue
            bitmap |= bit
            assert type(slot) is not Sibling, f"stray sibling at {off} in {node}"
            if type(slot) is Node:
                assert slot.shift == shift - CHUNK_SHIFT, "child at the wrong shift"
                assert slot.bitmap, "empty node left in the tree"
                n, p = self._check_node(slot, base + (off << shift), leaves)
                entries += n
                pages += p
                for m in range(MARK_COUNT):
                    if slot.marks[m]:
                        marks[m] |= bit
                off += 1
                continue
            span_shift = _span_shift(node.siblings, off)
            assert span_shift < CHUNK_SHIFT, "entry belongs one level up"
            assert shift + span_shift <= MAX_ORDER, "entry above MAX_ORDER"
            count = 1 << span_shift
            assert off % count == 0, "multi-slot entry misaligned"
            for i in range(off + 1, off + count):
                assert slots[i] is _SIBLINGS[off], f"slot {i} is not a sibling of {off}"
                bitmap |= 1 << i
                siblings |= 1 << i
            entries += 1
            pages += 1 << (shift + span_shift)
            spans.append(span_shift)
            for m in range(MARK_COUNT):
                marks[m] |= node.marks[m] & bit
            off += count
        assert node.bitmap == bitmap, f"occupancy bitmap wrong in {node}"
        assert node.siblings == siblings, f"sibling bitmap wrong in {node}"
        assert list(node.marks) == marks, f"mark bitmaps wrong in {node}"
        assert node.nr_entries == entries, f"entry count wrong in {node}"
        assert node.nr_pages == pages, f"page count wrong in {node}"
        stamps = node.stamps
        if stamps is not None:
            g = node.stamp_shift
            assert isinstance(stamps, array) and stamps.typecode == "q"
            assert len(stamps) == CHUNK_SIZE >> g
            assert all(g <= s for s in spans), "stamp array too coarse"
            canonical = bitmap & ~siblings
            for i, value in enumerate(stamps):
                if value:
                    assert canonical >> (i << g) & 1, "stamp without an entry"
                    assert type(slots[i << g]) is not Node, "stamp on a child node"
        return entries, pages
