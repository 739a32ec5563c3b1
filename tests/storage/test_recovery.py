"""Recovery rebuilds what live operation built.

The story: a registry is built live, journalling to a real store (batches of ranges,
single holds of many orders in every zone, overwrites, unsets that cut runs, holders
with and without a release handler, an offline block); a second registry is recovered
from that store. Every hold, order, holder, stamp, mark and count must be identical, and
where the live registry only ever added holds, every tree node too (recovery builds no
bigger a tree). Then rows written straight into SQLite (every order in every zone, runs
cut by a holder, a ``since``, a gap, a window or a zone boundary) come back as exactly
the holds a hold-by-hold rebuild makes. Last, what recovery refuses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pageholder.service.core.batch import batch_set
from pageholder.service.core.bulk import batch_set_ranges
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, PageRef, ReleaseAnswer
from pageholder.service.core.offline import offline_block
from pageholder.service.core.radix import CHUNK_SIZE, MARK_COUNT, Node, RadixTree
from pageholder.service.core.registry import Registry
from pageholder.service.core.zone import NO_HANDLER
from pageholder.service.storage.recovery import open_durable, recover
from pageholder.service.storage.sqlite import DB_FILE, RUN_WINDOW, Store, StoreError

DMA, DMA32, NORMAL = 1, 4096, 1 << 20  # the default layout's zones; Normal ends at 2**22
BLOCK = 32768


async def no_caller(
    holder: Holder, pages: Sequence[PageRef], *, reason: str, block: int | None, deadline: float
) -> ReleaseAnswer:
    raise AssertionError("nothing is released in these tests")


def picture(reg: Registry) -> dict[str, object]:
    """Everything a client can observe of the holds, and every holder's counts."""
    zones: dict[str, object] = {}
    for zh in reg.zones:
        tree = zh.tree
        tree._check()
        zone = zh.zone
        zones[zone.id] = {
            "holds": [(e.head, e.order, e.value.name, e.stamp) for e in tree.items()],  # type: ignore[attr-defined]
            # NO_HANDLER is a filter (core/zone.py): what it says is exact only for the
            # holds whose holder has no handler; stale marks of others may linger
            "marks": [
                [
                    e.head
                    for e in tree.marked(m)
                    if m != NO_HANDLER or not e.value.has_release_handler  # type: ignore[attr-defined]
                ]
                for m in range(MARK_COUNT)
            ],
            "counts": (len(tree), tree.pages),
            "blocks": [
                (tree.count_entries(b, b + BLOCK), tree.count_pages(b, b + BLOCK))
                for b in range(zone.start_pfn // BLOCK * BLOCK, zone.end_pfn, BLOCK)
            ],
        }
    holders = {
        h.name: (h.release_url, h.timeout_s, h.token_hash, h.holds, h.held_pages)
        for h in reg.holders.values()
    }
    blocks = [reg.block_state(b).value for b in range((1 << 22) // BLOCK)]
    return {"zones": zones, "holders": holders, "blocks": blocks}


def nodes(tree: RadixTree) -> Iterator[tuple[object, ...]]:
    """Every node of ``tree``: what it costs and holds (values by holder name)."""
    stack: list[tuple[Node, int]] = [] if tree._root is None else [(tree._root, 0)]
    while stack:
        node, base = stack.pop()
        values = []
        slots: list[object] = list(node.slots)
        if not node.shift:  # a leaf's cells: 0 empty, a handle, or -(offset + 1): a sibling
            slots = [
                None if h == 0 else "Sibling" if h < 0 else node.values[h]
                for h in node.cells[:CHUNK_SIZE]
            ]
        for off, slot in enumerate(slots):
            if type(slot) is Node:
                stack.append((slot, base + (off << node.shift)))
            values.append(slot if slot == "Sibling" else getattr(slot, "name", type(slot).__name__))
        stamps = None if node.stamps is None else (node.stamp_shift, node.stamps.tobytes())
        if not node.shift:  # a leaf's stamps are its cells' second half
            stamps = (0, node.cells[CHUNK_SIZE:].tobytes())
        yield (node.shift, base, node.bitmap, node.siblings, node.marks, node.nr_entries,
               node.nr_pages, stamps, tuple(values))  # fmt: skip


async def open_registry(data_dir: Path, layout: MemoryLayout) -> tuple[Registry, Store]:
    durable = open_durable(data_dir, layout)
    reg = Registry(layout, no_caller, journal=durable.store)
    try:
        recover(reg, durable.store)
    except BaseException:
        durable.store.close_now()
        raise
    durable.store.start()
    return reg, durable.store


async def test_a_recovered_registry_is_the_live_one(tmp_path: Path) -> None:
    layout = MemoryLayout.default()
    live, store = await open_registry(tmp_path, layout)
    await live.add_holder("nic0", release_url="http://127.0.0.1:9/r", token_hash="t1")
    await live.add_holder("balloon")
    await live.add_holder("gpu0", release_url="http://127.0.0.1:9/g", timeout_s=2.5)
    # batches: runs within a zone, across the DMA32/Normal boundary, past window edges
    await batch_set_ranges(live, "balloon", [], [(DMA32, 30_000), (NORMAL - 3000, 9000)])
    await batch_set_ranges(live, "nic0", [(DMA + 1, 0)], [(NORMAL + 65_536, 65_536)])
    await batch_set(live, "gpu0", [(NORMAL + 200_000 + 64 * i, 6) for i in range(100)])
    # single holds of every order, in each zone they fit
    for order in range(17):
        await live.set_hold((1 << 21) + (order << 16), "gpu0", order=order)  # Normal
    await live.set_hold(26 << 17, "gpu0", order=17)
    await live.set_hold(14 << 18, "nic0", order=18)
    for order in range(6):
        await live.set_hold(2048 + (1 << order) * 16, "balloon", order=order)  # DMA
        await live.set_hold(600_000 + (1 << order) * 64, "nic0", order=order)  # DMA32
    # changes that cut runs: unsets, an overwrite, a holder losing its handler
    for pfn in (DMA32 + 5, DMA32 + 4095, DMA32 + 4096, NORMAL + 65_536 + 777):
        await live.unset_hold(pfn)
    await live.set_hold(DMA32 + 64, "gpu0", order=6, overwrite=True)
    await live.update_holder("gpu0", release_url=None)
    # a holder deleted with its holds stays deleted, holds and all
    await live.add_holder("gone", release_url="http://127.0.0.1:9/x")
    await batch_set_ranges(live, "gone", [(NORMAL + 300_000, 9)], [(DMA32 + 40_000, 100)])
    await live.remove_holder("gone", force=True)
    await offline_block(live, 100)  # no holds in it: offline at once
    await store.close()
    again, store = await open_registry(tmp_path, layout)
    try:
        assert picture(again) == picture(live)
        assert again.new_stamp() > max(
            e.stamp for zh in live.zones for e in zh.tree.items()
        )  # since keeps growing across the restart
    finally:
        await store.close()


async def test_a_batch_built_tree_is_rebuilt_node_for_node(tmp_path: Path) -> None:
    layout = MemoryLayout.default()
    live, store = await open_registry(tmp_path, layout)
    await live.add_holder("nic0", release_url="http://127.0.0.1:9/r")
    await live.add_holder("balloon")
    for i in range(6):
        holder = ("nic0", "balloon")[i % 2]
        await batch_set_ranges(live, holder, [], [(NORMAL + i * 65_536, 65_536)])
    await batch_set(live, "nic0", [(NORMAL + 1_000_000 + 512 * i, 9) for i in range(64)])
    await store.close()
    again, store = await open_registry(tmp_path, layout)
    try:
        for before, after in zip(live.zones, again.zones, strict=True):
            assert list(nodes(after.tree)) == list(nodes(before.tree))
    finally:
        await store.close()


def write_rows(data_dir: Path, rows: list[tuple[int, int, str, int]]) -> None:
    """``rows`` (pfn, order, holder, since_us) straight into a new store's holds table."""
    Store.open(data_dir).close_now()
    db = sqlite3.connect(data_dir / DB_FILE)
    with db:
        for name in sorted({r[2] for r in rows}):
            url = None if name.startswith("x") else f"http://127.0.0.1:9/{name}"
            db.execute(
                "INSERT INTO holders VALUES (?, ?, 10.0, '', 1.0, ?, 's', NULL, 'keep')",
                (name, url, name),
            )
        db.executemany("INSERT INTO holds VALUES (?, ?, ?, ?)", rows)
    db.close()


def mixed_rows() -> list[tuple[int, int, str, int]]:
    rows: list[tuple[int, int, str, int]] = []
    # Runs cut by a change of holder, of since, by a gap, by window and zone boundaries.
    run = range(DMA32 - 10, DMA32 + 3 * RUN_WINDOW + 5)  # from DMA into DMA32
    rows += [(p, 0, "a", 7) for p in run if p != DMA32 + 100]
    rows += [(p, 0, "a" if p % 3 else "b", 7) for p in range(NORMAL - 50, NORMAL + 50)]
    rows += [(p, 0, "xc", 8 + (p >= NORMAL + 1000)) for p in range(NORMAL + 500, NORMAL + 1500)]
    rows += [(p, 0, "b", 9) for p in range(NORMAL + 8 * RUN_WINDOW, NORMAL + 16 * RUN_WINDOW)]
    # Every order that fits in each zone, largest first, packed from an aligned start.
    for cursor, top in ((1024, 10), (1 << 18, 18), (1 << 21, 18)):  # DMA, DMA32, Normal
        for order in range(top, -1, -1):
            rows.append((cursor, order, "xd", 100 + order))
            cursor += 1 << order
    return sorted(rows)


async def test_a_recovery_of_mixed_orders_and_zones(tmp_path: Path) -> None:
    rows = mixed_rows()
    assert {o for _, o, _, _ in rows} == set(range(19))
    assert len({r[0] for r in rows}) == len(rows)
    write_rows(tmp_path, rows)
    layout = MemoryLayout.default()
    recovered, store = await open_registry(tmp_path, layout)
    await store.close()
    # the model: the same holds inserted one by one through the zones' own step
    model = Registry(layout, no_caller)
    for name in sorted({r[2] for r in rows}):
        url = None if name.startswith("x") else f"http://127.0.0.1:9/{name}"
        model.enrol(Holder(name, release_url=url, timeout_s=10.0, created=1.0, token_hash=name))
    for pfn, order, name, since in rows:
        assert model.place(pfn, order).insert(pfn, order, model.holders[name], since)
    assert picture(recovered) == picture(model)
    zones = {zh.zone.name: len(zh.tree) for zh in recovered.zones}
    assert all(zones.values()) and sum(zones.values()) == len(rows)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(NORMAL, 9, "a", 1), (NORMAL + 3, 0, "a", 2)], "overlap"),
        ([(NORMAL + 1, 1, "a", 1)], "not within zone"),
        ([((1 << 22) - 2, 2, "a", 1)], "not within zone 0/Normal"),
        ([(0, 0, "a", 1)], "in no zone"),
        ([(1 << 23, 0, "a", 1)], "in no zone"),
    ],
)
async def test_what_recovery_refuses(
    tmp_path: Path, rows: list[tuple[int, int, str, int]], message: str
) -> None:
    write_rows(tmp_path, rows)
    with pytest.raises(StoreError, match=message):
        reg, store = await open_registry(tmp_path, MemoryLayout.default())
        await store.close()
