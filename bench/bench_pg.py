"""The PostgreSQL store: durable PUT-hold throughput beside SQLite, recovery of 10^6
holds, and how long a failover takes.

(a) Throughput: one ``pageholder serve`` with SQLite in a temporary data dir and one with
    ``--store`` on a PostgreSQL server started here (``fsync=on``: durable like SQLite's
    ``synchronous=FULL``), each driven by 32 connections (an httpx client, 32 tasks,
    each a PUT hold on its own fresh pfn in a loop) for ROUND_S seconds, rounds
    alternating; the row is PostgreSQL's requests/s and its ratio to SQLite's.
(b) Recovery: 10^6 order-0 holds of 8 holders with distinct stamps (the worst case: no
    run is longer than one row) written straight into each store, then ``open`` +
    ``recover`` into an empty registry, as a registry taking over does; best of 3.
(c) Failover: a leader and a standby on one database, default settings (lease 6 s);
    SIGKILL the leader, then PUT a hold on the standby every 50 ms until one succeeds;
    the time from the kill to that answer, 10 times (median and max).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._report import header, write_section
from pageholder.service.core.journal import HolderOp, HoldOp
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.registry import Registry
from pageholder.service.storage.postgres import PgStore
from pageholder.service.storage.recovery import open_durable, open_shared, recover
from pageholder.service.storage.sqlite import Store
from tests.integration.registries import AUTH, TOKEN, start_registry
from tests.integration.servers import running_server
from tests.postgres import PostgresServer, install

CONNECTIONS = 32
ROUND_S = 5.0
ROUNDS = 3
HOLDS = 1_000_000
HOLDERS = [f"h{i}" for i in range(8)]
FAILOVERS = 10
NORMAL = 1 << 20


async def _drive(url: str, seconds: float, base: int) -> float:
    """Requests/s of CONNECTIONS tasks each PUTting holds on fresh pfns."""
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(headers=AUTH, limits=limits, timeout=30) as http:
        done = 0
        stop = time.monotonic() + seconds

        async def one(c: int) -> None:
            nonlocal done
            pfn = base + c * 50_000
            while time.monotonic() < stop:
                answer = await http.put(f"{url}/v1/pages/{pfn}/hold", json={"holder": "nic0"})
                assert answer.status_code == 201, answer.text
                done += 1
                pfn += 1

        began = time.monotonic()
        await asyncio.gather(*(one(c) for c in range(CONNECTIONS)))
        return done / (time.monotonic() - began)


def throughput(work: Path, pg_url: str) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    with (
        running_server(work / "a", admin_token=TOKEN, data_dir=str(work / "sqlite")) as lite,
        running_server(work / "b", admin_token=TOKEN, args=["--store", pg_url]) as pg,
    ):
        urls = {"sqlite": lite.url, "postgresql": pg.url}
        for url in urls.values():
            httpx.post(f"{url}/v1/holders", json={"name": "nic0"}, headers=AUTH).raise_for_status()
        for r in range(ROUNDS):
            order = ["sqlite", "postgresql"] if r % 2 == 0 else ["postgresql", "sqlite"]
            for name in order:
                # each round's connections start on pfns no earlier round held
                rate = asyncio.run(_drive(urls[name], ROUND_S, NORMAL + r * 10_000))
                rates[name].append(rate)
                print(f"  round {r + 1} {name:10} {rate:7,.0f} PUT/s", flush=True)
    return rates


def _ops() -> list[object]:
    ops: list[object] = [HolderOp(n, None, 10.0, "", 1.7e9, "x", "whsec_x") for n in HOLDERS]
    ops.extend(
        HoldOp(pfn, 0, HOLDERS[(pfn >> 3) % 8], 1_700_000_000_000_000 + i)
        for i, pfn in enumerate(range(NORMAL, NORMAL + HOLDS))
    )
    return ops


async def _no_caller(*args: object, **kwargs: object) -> object:
    raise AssertionError("recovery calls no holder")


def recovery(work: Path, pg_url: str) -> dict[str, float]:
    layout = MemoryLayout.load("default")
    ops = _ops()
    lite = Store.open(work / "recovery")
    lite._transaction(ops)  # type: ignore[arg-type]
    lite.close_now()
    pg = PgStore.open(pg_url)
    pg._transaction(ops)  # type: ignore[arg-type]
    pg.close_now()
    del ops
    best: dict[str, float] = {}
    for name in ("sqlite", "postgresql", "sqlite", "postgresql", "sqlite", "postgresql"):
        gc.collect()
        began = time.perf_counter()
        durable = (
            open_durable(work / "recovery", layout)
            if name == "sqlite"
            else open_shared(pg_url, layout)
        )
        loaded = recover(Registry(layout, _no_caller), durable.store)  # type: ignore[arg-type]
        took = time.perf_counter() - began
        durable.store.close_now()
        assert loaded == HOLDS
        best[name] = min(best.get(name, took), took)
        print(f"  recovery {name:10} {took:5.2f} s", flush=True)
    return best


def failovers(work: Path, postgres: PostgresServer) -> list[float]:
    url = postgres.create_database()
    times: list[float] = []
    leader = start_registry(work / "f", url)
    leader.wait_healthy(path="/readyz")
    httpx.post(f"{leader.url}/v1/holders", json={"name": "nic0"}, headers=AUTH).raise_for_status()
    with httpx.Client(headers=AUTH, timeout=5) as http:
        for i in range(FAILOVERS):
            standby = start_registry(work / "f", url)
            leader.process.kill()
            leader.process.wait()
            killed = time.monotonic()
            while True:
                assert time.monotonic() - killed < 60, standby.output()
                answer = http.put(
                    f"{standby.url}/v1/pages/{NORMAL + i}/hold", json={"holder": "nic0"}
                )
                if answer.status_code == 201:
                    break
                time.sleep(0.05)
            times.append(time.monotonic() - killed)
            print(f"  failover {i + 1}: {times[-1]:.2f} s", flush=True)
            leader = standby
    leader.stop()
    return times


def main() -> None:
    binaries = install()
    if isinstance(binaries, str):
        sys.exit(f"bench pg: {binaries}")
    began = time.monotonic()
    postgres = PostgresServer(binaries, fsync=True)
    postgres.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            work = Path(tmp)
            print("(a) PUT-hold throughput, 32 connections", flush=True)
            rates = throughput(work, postgres.create_database())
            print("(b) recovery of 10^6 holds", flush=True)
            best = recovery(work, postgres.create_database())
            print("(c) failover: SIGKILL the leader, first write on the standby", flush=True)
            times = failovers(work, postgres)
    finally:
        postgres.destroy()
    lite, pg = statistics.median(rates["sqlite"]), statistics.median(rates["postgresql"])
    text = header("PostgreSQL store and failover", "python -m bench pg", time.monotonic() - began)
    text += (
        "| measure | PostgreSQL | SQLite (same run) | ratio |\n|---|---|---|---|\n"
        f"| durable PUT hold, {CONNECTIONS} connections (median of {ROUNDS} rounds of"
        f" {ROUND_S:.0f} s) | {pg:,.0f} /s | {lite:,.0f} /s | {pg / lite:.2f}x |\n"
        f"| recovery of 10^6 order-0 holds, 8 holders, distinct stamps (open + recover,"
        f" best of 3) | {best['postgresql']:.2f} s | {best['sqlite']:.2f} s |"
        f" {best['postgresql'] / best['sqlite']:.2f}x |\n"
        f"| leader SIGKILL to the first successful write on the standby (default lease"
        f" 6 s, {FAILOVERS} times) | median {statistics.median(times):.2f} s,"
        f" max {max(times):.2f} s | | |\n\n"
        f"PostgreSQL {postgres.binaries.parent.name}, started by the bench in a temporary"
        " directory with fsync=on, on 127.0.0.1; the load is one httpx client with 32"
        " concurrent tasks in this process (so both stores are measured with the same,"
        " client-bound, load). Failover = lease ttl (6 s) after the last renewal, plus up to"
        " one standby poll (2 s), plus loading the store.\n"
    )
    write_section("PostgreSQL store and failover", text)
    print(text)


if __name__ == "__main__":
    main()
