"""What the garbage collector has to walk: a full collection stops the event loop for as
long as it walks, so what it walks must not grow with the holds more than it must.

A full (generation 2) collection visits every reference of every tracked object. The
recent revisions stay in memory (``core.watchers``); their holds are tuples of int
pairs, which the collector untracks, so it walks a revision in O(1) whatever the number
of holds it names. A tree's leaf keeps its 64 slots in an array (``core.radix``:
cells), which the collector does not look into. These tests count the references a
full collection walks (``gc.get_referents`` of every tracked object), not time.
"""

from __future__ import annotations

import gc

from pageholder.service.core import collector
from pageholder.service.core.batch import batch_set, batch_unset
from pageholder.service.core.collector import SERVING_FULL_EVERY
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import OnExpiry
from pageholder.service.core.radix import CHUNK_SIZE, RadixTree
from pageholder.service.core.registry import Registry
from tests.core.test_leases import TTL, FakeClock
from tests.core.test_registry import NORMAL, Handler

HOLDS = 65_536
#: References a full collection may walk more per kept revision (whatever its holds).
PER_REVISION = 64
#: References a full collection may walk per leaf of a tree (64 pages, up to 64 holds):
#: the node's fields and its arrays, not a list of 64 slots (that was 76).
PER_LEAF = 20


def walked() -> int:
    """References a full collection walks now, in the steady state: the collector
    untracks a tuple when it finds every item untracked, and one collection may look at
    a tuple of pairs before it has untracked the pairs (a batch makes them while full
    collections wait: ``core.collector``), so two run first."""
    gc.collect()
    gc.collect()
    return sum(len(gc.get_referents(o)) for o in gc.get_objects())


async def test_a_kept_batch_revision_costs_a_collection_nothing_per_hold() -> None:
    registry = Registry(MemoryLayout.default(), Handler())
    await registry.add_holder("nic0")
    pages = [(NORMAL + 2 * i, 0) for i in range(HOLDS)]
    empty = walked()
    revisions = registry.events.revision
    await batch_set(registry, "nic0", pages)
    await batch_unset(registry, pages)  # the tree is empty again; both revisions are kept
    assert registry.events.revision == revisions + 2
    assert walked() - empty < 2 * PER_REVISION
    parts = registry.events.subscribe(revisions)[0]
    assert sum(len(p.holds) for ps in parts for p in ps) == 2 * HOLDS  # all there


async def test_a_reclaim_keeps_revisions_a_collection_walks_in_o1_each() -> None:
    clock = FakeClock()
    registry = Registry(MemoryLayout.default(), Handler(), monotonic=clock)
    holder = await registry.add_holder("nic0", lease_ttl_s=TTL, on_expiry=OnExpiry.KEEP)
    zh = registry.zone_holds(NORMAL)
    empty = walked()
    for i in range(HOLDS):
        zh.insert(NORMAL + 2 * i, 0, holder, i + 1)
    leaves = 2 * HOLDS // CHUNK_SIZE
    assert walked() - empty < PER_LEAF * leaves  # not 64 slots a leaf (core.radix: cells)
    clock.now += TTL + 1
    first = registry.events.revision
    done = await registry.leases.reclaim_now(holder)
    assert done.holds == HOLDS and holder.holds == 0
    kept = registry.events.revision - first  # holder.expired, then one per slice
    assert kept >= 2
    assert walked() - empty < PER_REVISION * kept


def test_a_tree_costs_a_collection_o1_per_leaf_and_keeps_no_value_it_dropped() -> None:
    class Value:
        pass

    empty = walked()
    tree = RadixTree()
    values = [Value() for _ in range(4)]
    for i in range(HOLDS):
        tree.insert(2 * i, values[i % 4], order=0, stamp=i + 1)
    leaves = 2 * HOLDS // CHUNK_SIZE
    assert walked() - empty < PER_LEAF * leaves + 64
    for i in range(HOLDS):
        tree.erase(2 * i)
    tree._check()
    assert tree._values == [None] * 5  # every handle freed, no value kept alive


def test_full_collections_spaced_out_and_put_back_even_inside_a_deferral() -> None:
    before = gc.get_threshold()
    try:
        old = collector.space_full_collections()
        assert old == before[2] and gc.get_threshold() == (*before[:2], SERVING_FULL_EVERY)
        with collector.full_collections_deferred():
            assert gc.get_threshold()[2] == collector.NEVER
            assert collector.space_full_collections(old) == SERVING_FULL_EVERY
            assert gc.get_threshold()[2] == collector.NEVER  # still deferred
        assert gc.get_threshold() == before  # the deferral put back the new one
    finally:
        gc.set_threshold(*before)
