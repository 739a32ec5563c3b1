"""One zone's synchronous steps: counts, marks and the generation check move together."""

from __future__ import annotations

from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder, HoldState
from pageholder.service.core.zone import NO_HANDLER, RELEASING, ZoneHolds

NORMAL = 1 << 20


def normal_zone() -> ZoneHolds:
    zh = ZoneHolds(MemoryLayout.default().zones[2])
    assert zh.zone.start_pfn == NORMAL
    return zh


def test_insert_counts_marks_and_refuses_an_overlap() -> None:
    zh = normal_zone()
    nic0 = Holder("nic0", release_url="http://127.0.0.1:1/")
    bare = Holder("bare")
    assert zh.insert(NORMAL, 9, nic0, 10)
    assert (nic0.holds, nic0.held_pages) == (1, 512)
    assert not zh.tree.get_mark(NORMAL, NO_HANDLER)
    assert not zh.insert(NORMAL + 5, 0, bare, 11)  # inside nic0's hold
    assert (bare.holds, bare.held_pages) == (0, 0)
    assert zh.insert(NORMAL + 512, 0, bare, 12)
    assert zh.tree.get_mark(NORMAL + 512, NO_HANDLER)
    zh.tree._check()


def test_only_the_same_generation_is_erased_or_settled() -> None:
    zh = normal_zone()
    nic0, gpu0 = Holder("nic0"), Holder("gpu0")
    assert zh.insert(NORMAL, 0, nic0, 10)
    old = zh.tree.load(NORMAL)
    assert old is not None
    assert zh.current(NORMAL, 11, nic0) is None  # another stamp
    assert zh.current(NORMAL, 10, gpu0) is None  # another holder
    assert not zh.erase_generation(NORMAL, 11, nic0)
    # dropped and held again by someone else: a late settle of the old one changes nothing
    assert zh.erase_generation(NORMAL, 10, nic0)
    assert zh.insert(NORMAL, 0, gpu0, 12)
    assert not zh.settle(old, True, None)
    assert (nic0.holds, gpu0.holds) == (0, 1)
    assert zh.snapshot(zh.tree.load(NORMAL)).holder is gpu0  # type: ignore[arg-type]


def test_settle_puts_a_failed_release_back_to_held_with_the_error() -> None:
    zh = normal_zone()
    nic0 = Holder("nic0", release_url="http://127.0.0.1:1/")
    assert zh.insert(NORMAL, 0, nic0, 10)
    entry = zh.tree.load(NORMAL)
    assert entry is not None
    zh.tree.set_mark(NORMAL, RELEASING)
    assert zh.snapshot(entry).state is HoldState.RELEASING
    assert not zh.settle(entry, False, "busy")
    assert zh.snapshot(entry).state is HoldState.HELD
    assert nic0.last_error == "busy" and nic0.holds == 1
    assert zh.settle(entry, True, None)
    assert zh.tree.load(NORMAL) is None and nic0.holds == 0


def test_mark_handler_follows_the_holder() -> None:
    zh = normal_zone()
    nic0 = Holder("nic0")
    for i in range(3):
        assert zh.insert(NORMAL + i, 0, nic0, 10 + i)
    assert all(zh.tree.get_mark(NORMAL + i, NO_HANDLER) for i in range(3))
    zh.mark_handler(nic0, True)
    assert not any(zh.tree.get_mark(NORMAL + i, NO_HANDLER) for i in range(3))
