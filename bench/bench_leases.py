"""Holder leases: what keeping 1,000 holders alive costs the registry, and how long the
event loop can stall while a holder with 10^6 holds expires (``on_expiry: reclaim``).

(a) a registry in a child process (``bench._server``, ``:memory:``); 1,000 holders with
    ``lease_ttl_s = 3``, each sent a keepalive every second (a third of the TTL, as the
    SDK does) for ``SECONDS`` by paced asyncio workers in this process; the registry's
    CPU share = its utime + stime (``/proc/PID/stat``) over the wall time. Baseline, same
    run, same pacing: ``GET /v1/holders/{name}`` for the same holders (a read of the same
    row; the keepalive holders expire during it and are revived by the next round's
    first keepalive). Expirations while the keepalives ran and holders live at the end of
    each keepalive run are read from /metrics (a keepalive that falls more than a TTL
    behind its schedule lets its holder expire).
(b) in process: a ``Registry`` with one holder (``lease_ttl_s = 1``, ``on_expiry:
    reclaim``) holding 10^6 order-0 holds (every third page) in the Normal zone; a probe
    task on the same loop does ``await asyncio.sleep(0)`` in a loop and records the
    longest gap while the real lease timer fires and the reclaim erases everything.
    The holds are put in the tree the way recovery does, then the bench does what
    ``api.app._become_ready`` does once recovery is over: ``gc.collect(); gc.freeze()``
    (so the full collections do not walk the tree). Baseline, same run: the same holds
    erased by ``remove_holder(force=True)`` (one critical section), whose stall is the
    whole erase. The longest gap is also measured in CPU time (``time.thread_time``:
    the loop's own work, which a loaded machine does not inflate). Full collections
    during the reclaim are counted and timed, in wall and in CPU time
    (``gc.callbacks``).
(b') the same, but the holds are made after the server became ready (the empty
    registry frozen, then the holds put in the tree: what 10^6 set-holds leave there,
    without the requests and their revisions), so they are not frozen and every full
    collection walks the tree.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time

import httpx

from bench._report import header, write_section
from bench._server import Server, fmt_rate, fmt_s, info_row, ratio_row, table
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import OnExpiry, ReleaseAnswer
from pageholder.service.core.registry import Registry

HOLDERS = 1000
TTL_S = 3
SECONDS = 10.0
WORKERS = 25
HOLDS = 1_000_000
NORMAL = 1 << 20
STALL_TARGET_S = 0.020
TITLE = "Holder leases"


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def paced(server: Server, paths: list[str], method: str) -> tuple[float, float, int]:
    """Send one request per path per second for SECONDS over WORKERS keep-alive
    connections (hand-written HTTP/1.1: the load generator must cost far less than the
    server); returns (the server's CPU share, requests/s achieved, non-200 answers)."""
    assert server.proc is not None
    per_worker = [paths[i::WORKERS] for i in range(WORKERS)]
    sent = errors = 0
    auth = server.headers["Authorization"]

    async def worker(mine: list[str]) -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        start = loop.time()
        gap = 1.0 / len(mine)
        i = 0
        while (due := start + i * gap) < start + SECONDS:
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(
                f"{method} {mine[i % len(mine)]} HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: {auth}\r\nContent-Length: 0\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            sent += 1
            errors += not head.startswith(b"HTTP/1.1 200")
            i += 1
        writer.close()
        await writer.wait_closed()

    cpu0, wall0 = cpu_seconds(server.proc.pid), time.monotonic()
    await asyncio.gather(*(worker(m) for m in per_worker))
    cpu1, wall1 = cpu_seconds(server.proc.pid), time.monotonic()
    return (cpu1 - cpu0) / (wall1 - wall0), sent / (wall1 - wall0), errors


async def lease_metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return float(next(line for line in text.splitlines() if line.startswith(name)).split()[-1])


async def keepalive_rows() -> list:  # type: ignore[type-arg]
    with Server() as server:
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.headers, trust_env=False, timeout=10
        ) as http:
            for i in range(HOLDERS):
                r = await http.post("/v1/holders", json={"name": f"h{i}", "lease_ttl_s": TTL_S})
                assert r.status_code == 201, r.text
            names = [f"h{i}" for i in range(HOLDERS)]
            keep = [f"/v1/holders/{n}/keepalive" for n in names]
            read = [f"/v1/holders/{n}" for n in names]
            rounds = []
            expired: list[int] = []
            lives: list[int] = []
            for _ in range(2):  # alternating, medians
                before = await lease_metric(http, "pageholder_lease_expirations_total")
                kept = await paced(server, keep, "POST")
                after = await lease_metric(http, "pageholder_lease_expirations_total")
                live = await lease_metric(http, 'pageholder_holders_by_lease{state="live"}')
                expired.append(int(after - before))
                lives.append(int(live))
                rounds.append((kept, await paced(server, read, "GET")))
    keep_cpu = statistics.median(k[0] for k, _ in rounds)
    read_cpu = statistics.median(g[0] for _, g in rounds)
    sent = statistics.median(k[1] for k, _ in rounds)  # requests/s achieved
    errors = sum(k[2] + g[2] for k, g in rounds)
    assert errors == 0
    return [
        ratio_row(
            f"(a) keepalives of {HOLDERS:,} holders at TTL {TTL_S} s (1 per holder per s), "
            "registry CPU share",
            f"{keep_cpu:.1%} of one core ({fmt_rate(sent)})",
            f"{read_cpu:.1%} (GET holder, same pacing)",
            keep_cpu / read_cpu,
            1.5,
            higher=False,
        ),
        info_row(
            "(a) expirations while the keepalives ran / holders live at the end, per round",
            " / ".join(f"{e} / {n:,}" for e, n in zip(expired, lives, strict=True)),
        ),
    ]


async def no_release(holder, pages, *, reason, block, deadline):  # type: ignore[no-untyped-def]
    return ReleaseAnswer.all_released(pages)


def fill(registry: Registry, name: str) -> None:
    zh = registry.zones[2]
    holder = registry.holders[name]
    for i in range(HOLDS):
        zh.insert(NORMAL + 3 * i, 0, holder, i + 1)


class Collections:
    """Full (generation 2) collections while it is on: how many, the longest in wall
    time and in this thread's CPU time (which other processes on a loaded machine do
    not inflate)."""

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0
        self.longest_cpu = 0.0
        self._began = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = (time.perf_counter(), time.thread_time())
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._began[0])
            self.longest_cpu = max(self.longest_cpu, time.thread_time() - self._began[1])


async def reclaim_stall(
    after_recovery: bool,
) -> tuple[float, float, float, int, Collections]:
    """Fill a leased holder with HOLDS holds, let it expire and be reclaimed; returns the
    longest gap the probe saw (wall, then this thread's CPU time: what the loop did in
    it, without the time other processes took the core), the reclaim's time, the
    probe's ticks, and the full collections meanwhile. ``after_recovery``: the holds
    are there before the server is ready (recovery), so ``_become_ready`` froze them;
    else the empty registry was ready (frozen) and the holds came after."""
    registry = Registry(MemoryLayout.default(), no_release)
    holder = await registry.add_holder("dead0", lease_ttl_s=1, on_expiry=OnExpiry.RECLAIM)
    if after_recovery:
        fill(registry, "dead0")
    gc.collect()  # what api.app._become_ready does
    gc.freeze()
    if not after_recovery:
        fill(registry, "dead0")
    longest = longest_cpu = 0.0
    ticks = 0
    done = asyncio.Event()
    collections = Collections()

    async def probe() -> None:
        nonlocal longest, longest_cpu, ticks
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0)
            now, now_cpu = time.perf_counter(), time.thread_time()
            longest = max(longest, now - last)
            longest_cpu = max(longest_cpu, now_cpu - last_cpu)
            ticks += 1
            last, last_cpu = now, now_cpu

    gc.callbacks.append(collections)
    probing = asyncio.create_task(probe())
    started = time.perf_counter()
    while holder.holds:  # the lease timer fires after 1 s and the reclaim runs
        await asyncio.sleep(0.005)
    took = time.perf_counter() - started - 1.0
    done.set()
    await probing
    gc.callbacks.remove(collections)
    gc.unfreeze()
    assert registry.leases.stats.reclaimed_holds == HOLDS
    return longest, longest_cpu, took, ticks, collections


async def stall_rows() -> list:  # type: ignore[type-arg]
    cases = {
        "(b)": await reclaim_stall(after_recovery=True),
        "(b')": await reclaim_stall(after_recovery=False),
    }
    registry = Registry(MemoryLayout.default(), no_release)
    await registry.add_holder("gone0")
    fill(registry, "gone0")
    t0 = time.perf_counter()
    await registry.remove_holder("gone0", force=True)
    one_shot = time.perf_counter() - t0
    rows = []
    for case, (longest, longest_cpu, took, ticks, collections) in cases.items():
        when = "recovered, frozen" if case == "(b)" else "made after start, not frozen"
        rows += [
            ratio_row(
                f"{case} largest event-loop stall while a holder with {HOLDS:,} holds "
                f"({when}) expires (on_expiry: reclaim)",
                fmt_s(longest),
                f"{fmt_s(one_shot)} (remove_holder force: one critical section)",
                longest / one_shot,
                0.01,
                higher=False,
            ),
            info_row(
                f"{case} largest stall against the {STALL_TARGET_S * 1000:g} ms limit",
                fmt_s(longest),
                "",
                "pass" if longest <= STALL_TARGET_S else "MISS",
            ),
            info_row(
                f"{case} the same stall in CPU time (the loop's own work between two "
                "ticks, without what other processes took)",
                fmt_s(longest_cpu),
                "",
                "pass" if longest_cpu <= STALL_TARGET_S else "MISS",
            ),
            info_row(
                f"{case} whole reclaim (expiry to last hold erased), probe ticks; "
                "full collections meanwhile, the longest (wall / CPU)",
                f"{fmt_s(took)}, {ticks:,} ticks; {collections.count}, "
                f"{fmt_s(collections.longest)} / {fmt_s(collections.longest_cpu)}",
            ),
        ]
    return rows


def main() -> None:
    started = time.monotonic()
    rows = asyncio.run(stall_rows())
    rows = asyncio.run(keepalive_rows()) + rows
    command = ".venv/bin/python -m bench leases"
    text = header(TITLE, command, time.monotonic() - started)
    text += (__doc__ or "").split("\n\n", 1)[1].strip() + "\n\n" + table(rows) + "\n"
    print(text)
    write_section(TITLE, text)


if __name__ == "__main__":
    sys.exit(main())
