"""Batch request times, this tree against main's code, in the same run.

Run: ``.venv/bin/python -m bench batch``. ``BENCH_QUICK=1`` makes a short run that
leaves RESULTS.md alone.

Two servers (``bench._server``, durable data directories in a temporary folder), one
running this tree, one main's code (``git archive main`` on ``PYTHONPATH``, as
``bench events`` does), each with one holder. On each, in turn: a 65,536-page
batch-set then batch-unset given as one range (the stall benchmark's case (a)), then
the same as a 65,536-entry ``pages`` list (case (a')). A time is the client's wall time
for one request with its answer read whole; medians of ``REPS`` rounds, the servers
alternating round by round, so that both see the same machine. Ratio: main's time /
this tree's (above 1: this tree is faster). Target: no regression beyond noise
(>= 0.9x).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from ._report import header, write_section
from ._server import NORMAL_START, Row, Server, ratio_row, table
from .bench_events import main_tree
from .bench_stall import load, server_of

COMMAND = ".venv/bin/python -m bench batch"
SECTION = "Batch requests: this tree vs main"
BATCH = 65536
REPS = 5
KINDS = ("range batch-set", "range batch-unset", "pages batch-set", "pages batch-unset")


def bodies() -> dict[str, tuple[str, bytes]]:
    """Each kind's route and body."""
    ranges = {"holder": "bulk", "ranges": [{"start_pfn": NORMAL_START, "nr_pages": BATCH}]}
    pages = [{"pfn": NORMAL_START + i, "order": 0} for i in range(BATCH)]
    return {
        "range batch-set": ("batch-set", json.dumps(ranges).encode()),
        "range batch-unset": ("batch-unset", json.dumps(ranges).encode()),
        "pages batch-set": ("batch-set", json.dumps({"holder": "bulk", "pages": pages}).encode()),
        "pages batch-unset": ("batch-unset", json.dumps({"pages": pages}).encode()),
    }


async def one_round(server: Server, times: dict[str, list[float]]) -> None:
    headers = {**server.headers, "content-type": "application/json"}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=120, trust_env=False
    ) as client:
        for kind, (route, body) in bodies().items():
            began = time.perf_counter()
            answer = await client.post(f"/v1/holds/{route}", content=body)
            answer.raise_for_status()
            assert len(answer.json()["results"]) == BATCH
            times[kind].append(time.perf_counter() - began)


async def measure(reps: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    mine: dict[str, list[float]] = {k: [] for k in KINDS}
    theirs: dict[str, list[float]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as base:
        main_code = main_tree(Path(base) / "main")
        with (
            server_of(str(Path(base) / "mine"), None) as this_tree,
            server_of(str(Path(base) / "theirs"), main_code) as main_server,
        ):
            for server in (this_tree, main_server):
                async with httpx.AsyncClient(
                    base_url=server.url, headers=server.headers, trust_env=False
                ) as client:
                    (await client.post("/v1/holders", json={"name": "bulk"})).raise_for_status()
                await one_round(server, {k: [] for k in KINDS})  # warm-up
            for rep in range(reps):
                order = [(this_tree, mine), (main_server, theirs)]
                for server, times in order if rep % 2 == 0 else order[::-1]:
                    await one_round(server, times)
    return mine, theirs


def main() -> None:
    quick = bool(os.environ.get("BENCH_QUICK"))
    reps = 2 if quick else REPS
    began = time.monotonic()
    before = load()
    mine, theirs = asyncio.run(measure(reps))
    rows: list[Row] = []
    for kind in KINDS:
        ours, main_s = statistics.median(mine[kind]), statistics.median(theirs[kind])
        rows.append(
            ratio_row(
                f"{kind} of 65,536 pages, request time",
                f"{ours * 1000:.0f} ms (spread {min(mine[kind]) * 1000:.0f}-"
                f"{max(mine[kind]) * 1000:.0f})",
                f"{main_s * 1000:.0f} ms (spread {min(theirs[kind]) * 1000:.0f}-"
                f"{max(theirs[kind]) * 1000:.0f}, main's code)",
                main_s / ours,
                0.9,
            )
        )
    extra = f"; load average (1/5/15 min) {before} before, {load()} after"
    text = header(SECTION, COMMAND, time.monotonic() - began, extra) + (
        f"Medians of {reps} rounds, the two servers alternating (see bench/bench_batch.py)."
        "\n\n" + table(rows) + "\n"
    )
    print(text)
    if not quick:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
