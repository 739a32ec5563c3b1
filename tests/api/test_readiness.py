"""Starting is not dead: while a durable registry recovers its holds, /healthz answers,
/readyz and /v1 say 503 not_ready; once recovered, everything answers. A recovery that
fails keeps the registry not ready and says why (``serve`` then exits non-zero:
tests/integration/test_durability.py)."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from pageholder.service.api import create_app
from pageholder.service.api import loading as app_module
from pageholder.service.core.collector import SERVING_FULL_EVERY
from pageholder.service.settings import Settings
from pageholder.service.storage.sqlite import DB_FILE, Store

from .conftest import start

TOKEN = "readiness-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NORMAL = 1 << 20


def stored(data_dir: Path, rows: list[tuple[int, int, str, int]]) -> None:
    Store.open(data_dir).close_now()
    db = sqlite3.connect(data_dir / DB_FILE)
    with db:
        db.execute(
            "INSERT INTO holders VALUES ('nic0', NULL, 10.0, '', 1.0, '', 's', NULL, 'keep')"
        )
        db.executemany("INSERT INTO holds VALUES (?, ?, ?, ?)", rows)
    db.close()


async def test_health_answers_while_recovering_and_v1_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(tmp_path, [(NORMAL + i, 0, "nic0", 5) for i in range(100)])
    entered, release = threading.Event(), threading.Event()
    real = app_module.recover

    def held_back(*args: Any, **kwargs: Any) -> int:
        entered.set()
        assert release.wait(30), "the test never let recovery go on"
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "recover", held_back)
    app = create_app(Settings(data_dir=str(tmp_path), admin_token=TOKEN))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r", headers=AUTH) as c:
            assert await asyncio.to_thread(entered.wait, 30)
            assert (await c.get("/healthz")).status_code == 200
            readyz = await c.get("/readyz")
            assert (readyz.status_code, readyz.json()["code"]) == (503, "not_ready")
            assert "recovering" in readyz.json()["detail"]
            for path in ("/v1/holders", f"/v1/pages/{NORMAL}", "/metrics"):
                answer = await c.get(path)
                assert (answer.status_code, answer.json()["code"]) == (503, "not_ready"), path
                assert answer.headers["retry-after"] == "1"
            assert (await c.get("/openapi.json")).status_code == 200
            release.set()
            state = app.state.service
            await asyncio.wait_for(state.readiness.settled.wait(), 30)
            assert (await c.get("/readyz")).status_code == 200
            page = (await c.get(f"/v1/pages/{NORMAL + 99}")).json()
            assert (page["held"], page["holder"]) == (True, "nic0")
            nic0 = (await c.get("/v1/holders/nic0")).json()
            assert (nic0["holds"], nic0["held_pages"]) == (100, 100)


async def test_a_failed_recovery_stays_not_ready_and_says_why(tmp_path: Path) -> None:
    stored(tmp_path, [(NORMAL, 9, "nic0", 1), (NORMAL + 3, 0, "nic0", 2)])  # overlapping
    reasons: list[str] = []
    app = create_app(Settings(data_dir=str(tmp_path), admin_token=TOKEN), on_fatal=reasons.append)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.service.readiness.settled.wait(), 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://r", headers=AUTH) as c:
            readyz = (await c.get("/readyz")).json()
            assert readyz["status"] == 503 and "recovery failed" in readyz["detail"]
            assert (await c.get("/v1/holders")).status_code == 503
            assert (await c.get("/healthz")).status_code == 200
    assert len(reasons) == 1 and "overlap" in reasons[0]


async def test_a_serving_registry_spaces_full_collections_out_and_puts_them_back() -> None:
    """While it serves, full collections are considered every ``SERVING_FULL_EVERY``
    young-generation passes (``collector.space_full_collections``), not CPython's 10;
    once it stops, the process's own setting is back."""
    before = gc.get_threshold()
    async for _ in start():
        assert gc.get_threshold() == (*before[:2], SERVING_FULL_EVERY)
    assert gc.get_threshold() == before
