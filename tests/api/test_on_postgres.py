"""The HTTP suite's core cases again, with the registry's state in PostgreSQL: holders,
holds, batches, blocks, leases and events through the same routes, every change
committed to a real server (``--store postgresql://...``) before it is answered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from .conftest import Api, start
from .test_batch import (
    test_an_atomic_batch_is_all_or_nothing,
    test_batch_set_answers_each_entry,
    test_batch_unset,
    test_listing_holds_page_by_page,
)
from .test_holders import (
    test_deleting_a_holder_with_holds_needs_the_admins_force,
    test_holders_list_shows_what_each_holds,
    test_register_a_holder_returns_its_secrets_once,
    test_tokens,
)
from .test_leases import (
    test_keepalive_renews_revives_and_is_self_or_admin,
    test_offline_with_orphans,
    test_reclaim_is_for_expired_holders_only,
)
from .test_pages import (
    test_hold_conflicts_and_overwrite,
    test_hold_lookup_unset,
    test_no_hold_in_a_block_that_is_not_online,
    test_release,
)
from .test_zones_blocks import test_blocks_report_holds_and_removability

CASES = (
    test_register_a_holder_returns_its_secrets_once,
    test_holders_list_shows_what_each_holds,
    test_deleting_a_holder_with_holds_needs_the_admins_force,
    test_tokens,
    test_hold_lookup_unset,
    test_hold_conflicts_and_overwrite,
    test_no_hold_in_a_block_that_is_not_online,
    test_release,
    test_batch_set_answers_each_entry,
    test_an_atomic_batch_is_all_or_nothing,
    test_batch_unset,
    test_listing_holds_page_by_page,
    test_blocks_report_holds_and_removability,
    test_keepalive_renews_revives_and_is_self_or_admin,
    test_reclaim_is_for_expired_holders_only,
    test_offline_with_orphans,
)


@pytest.fixture
async def api(pg_url: str) -> AsyncIterator[Api]:
    """The cases above take this ``api``: the app on a fresh PostgreSQL database."""
    async for started in start(store=pg_url):
        yield started


async def test_what_was_answered_is_in_the_database_and_comes_back(pg_url: str) -> None:
    async for api in start(store=pg_url):
        await api.add_holder("nic0")
        held = await api.admin.put("/v1/pages/1048576/hold", json={"holder": "nic0", "order": 9})
        assert held.status_code == 201, held.text
        batch = {"holder": "nic0", "ranges": [{"start_pfn": 1050000, "nr_pages": 100}]}
        assert (await api.admin.post("/v1/holds/batch-set", json=batch)).status_code == 200
        offline = await api.admin.post("/v1/blocks/40/offline", json={})
        assert offline.status_code == 200, offline.text
        revision = int((await api.admin.get("/v1/zones")).headers["x-pageholder-revision"])
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT count(*) FROM holds").fetchone() == (101,)
        assert db.execute("SELECT max(rev) FROM events").fetchone() == (revision,)
    async for again in start(store=pg_url):  # a restart: the same state, revisions go on
        page = (await again.admin.get("/v1/pages/1048600")).json()
        assert (page["holder"], page["head_pfn"], page["order"]) == ("nic0", 1048576, 9)
        assert (await again.admin.get("/v1/blocks/40")).json()["state"] == "offline"
        assert (await again.admin.get("/v1/pages/1050099")).json()["held"]
        await again.add_holder("gpu0")
        zones = await again.admin.get("/v1/zones")
        assert int(zones.headers["x-pageholder-revision"]) == revision + 1
