"""Revisions in the SQLite journal: written in the change's transaction (a change that
fails takes its event with it), read back in order, continued after a restart, and
compacted past the retention."""

from __future__ import annotations

import pytest

from pageholder.service.core.errors import StorageUnavailable
from pageholder.service.core.events import EventBody, EventType, Revision
from pageholder.service.core.journal import HolderOp, HoldOp

from .conftest import Opener


def revision(rev: int, holder: str = "nic0") -> Revision:
    return Revision(rev, 1000.0 + rev, [EventBody(EventType.HOLD_CREATED, holder, [(rev, 0)])])


async def test_an_event_commits_with_its_change_and_not_without_it(open_store: Opener) -> None:
    store = open_store()
    store.revision()
    store.start()
    await store.submit([HolderOp("nic0", None, 10.0, "", 1.0, "h", "s")], None, revision(1))
    good = store.submit([HoldOp(5, 0, "nic0", 1)], None, revision(2))
    bad = store.submit([HoldOp(6, 0, "nobody", 2)], None, revision(3))  # no such holder
    after = store.submit([HoldOp(7, 0, "nic0", 3)], None, revision(4))  # fails: after bad
    await good
    for failed in (bad, after):
        with pytest.raises(StorageUnavailable):
            await failed
    store.resume()  # what the registry does once memory is back
    await store.submit([HoldOp(7, 0, "nic0", 3)], None, revision(5))
    kept = store.read_revisions(0, 100)
    assert [r.rev for r in kept] == [1, 2, 5]  # 3 and 4 failed with their changes
    assert kept[1].bodies[0] == EventBody(EventType.HOLD_CREATED, "nic0", [(2, 0)])
    assert [r.rev for r in store.read_revisions(2, 1)] == [5]
    await store.close()
    again = open_store()
    assert again.revision() == 5  # where revisions go on after a restart
    assert [run.pfn for run in again.hold_runs()] == [5, 7]
    again.close_now()


async def test_revisions_past_the_retention_are_compacted(open_store: Opener) -> None:
    store = open_store()
    store.revision()
    store.retention = 10
    store.start()
    await store.submit([HolderOp("nic0", None, 10.0, "", 1.0, "h", "s")])
    for rev in range(1, 41):
        await store.submit([], None, revision(rev))
    await store.close()  # the writer compacts after it resolved: wait for all of it
    again = open_store()
    assert again.revision() == 40
    kept = [r.rev for r in again.read_revisions(0, 1000)]
    # At least the last 10, at most a tenth more; compacted_through says up to where.
    assert kept == list(range(kept[0], 41)) and 10 <= len(kept) <= 11
    assert again.compacted_through == store.compacted_through == kept[0] - 1
    await again.close()
