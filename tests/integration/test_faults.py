"""Faults a registry must survive without lying: a full disk in the middle of a race."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from pageholder.service.storage import sqlite as store_module

from .test_durability import NORMAL, service, tmpfs

PAIRS = 300


def fill(mount: Path) -> None:
    """Take whatever space is left on ``mount``."""
    with (mount / "ballast").open("wb", buffering=0) as out, contextlib.suppress(OSError):
        for _ in range(1 << 16):
            out.write(b"\0" * 4096)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_full_disk_race_of_unset_and_set_keeps_memory_and_disk_equal(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "600k") as mount:
        async with service(mount) as api:
            for name in ("a", "b", "filler"):
                assert (await api.post("/v1/holders", json={"name": name})).status_code == 201
            first = {"holder": "a", "ranges": [{"start_pfn": NORMAL, "nr_pages": PAIRS}]}
            assert (await api.post("/v1/holds/batch-set", json=first)).status_code == 200
            for i in range(1, 200):
                body = {
                    "holder": "filler",
                    "ranges": [{"start_pfn": NORMAL + i * 1000, "nr_pages": 1000}],
                }
                if (await api.post("/v1/holds/batch-set", json=body)).status_code != 200:
                    break
            else:
                raise AssertionError("the disk never filled up")
            fill(mount)
            # A lets go of P while B takes it; the disk is full, so both must fail and
            # leave P as the database has it: A's.
            for i in range(PAIRS):
                pfn = NORMAL + i
                await asyncio.gather(
                    api.delete(f"/v1/pages/{pfn}/hold"),
                    api.put(f"/v1/pages/{pfn}/hold", json={"holder": "b"}),
                )
            listed = (
                await api.get(
                    "/v1/pages", params={"start": NORMAL, "end": NORMAL + PAIRS, "limit": 1000}
                )
            ).json()["items"]
            memory = {h["pfn"]: h["holder"] for h in listed}
            uri = f"file:{mount / store_module.DB_FILE}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                rows = db.execute(
                    "SELECT pfn, holder FROM holds WHERE pfn < ?", (NORMAL + PAIRS,)
                ).fetchall()
            assert memory == dict(rows)
