"""Both stores behind one fixture: the tests of the journal's contract run on each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pageholder.service.storage.postgres import PgStore
from pageholder.service.storage.protocol import DurableStore
from pageholder.service.storage.sqlite import Store

#: opens the same store again (as a restart would)
Opener = Callable[[], DurableStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "sqlite":
        return lambda: Store.open(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return lambda: PgStore.open(url)
