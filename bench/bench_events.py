"""Watch: what subscribers cost the writers, and how fast an event reaches them.

Run: ``.venv/bin/python -m bench events``. ``BENCH_QUICK=1`` makes short runs and
leaves RESULTS.md alone.

Every server is ``bench._server`` with a real data directory (SQLite, WAL,
``synchronous=FULL``: every revision is written with its change), one worker.

(a) Set+unset pairs: 16 concurrent loops in this process, each ``PUT
    /v1/pages/{pfn}/hold`` then ``DELETE`` of its own pfn, for DURATION s, with 0, 10
    and 100 subscribers connected (``GET /v1/events``, all events; they run in a child
    process that reads every byte). Pairs/s with N subscribers over pairs/s with 0,
    measured in the same run on the same server. Target: >= 0.8 at 100.
(b) The hot path before and after: the same pairs with 0 subscribers against a server
    running main's code (``git archive main``, put first on ``PYTHONPATH``) and one
    running this tree's, alternating, medians of REPS runs. Target: >= 0.95.
(c) Delivery latency: one subscriber in a child process; this process holds and
    unsets one page at a time (paced); for each event, the receipt time minus the
    event's ``time`` (when the registry made the change, before its commit: so this is
    commit + delivery), p50/p99 over SAMPLES events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ._report import header, write_section
from ._server import (
    NORMAL_START,
    ROOT,
    TOKEN,
    Server,
    fmt_rate,
    fmt_us,
    info_row,
    ratio_row,
    table,
)

QUICK = bool(os.environ.get("BENCH_QUICK"))
DURATION = 2.0 if QUICK else 6.0
REPS = 1 if QUICK else 3
WORKERS = 16
SAMPLES = 200 if QUICK else 1000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def pairs(url: str, duration: float) -> float:
    """Set+unset pairs per second from WORKERS loops."""
    done = 0
    stop = time.monotonic() + duration
    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30) as http:
        created = await http.post("/v1/holders", json={"name": f"bench{os.getpid()}"})
        name = created.json()["name"] if created.status_code == 201 else f"bench{os.getpid()}"

        async def loop(pfn: int) -> None:
            nonlocal done
            while time.monotonic() < stop:
                held = await http.put(f"/v1/pages/{pfn}/hold", json={"holder": name})
                assert held.status_code == 201, held.text
                unset = await http.delete(f"/v1/pages/{pfn}/hold")
                assert unset.status_code == 204, unset.text
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(NORMAL_START + 64 * i) for i in range(WORKERS)))
        return done / (time.monotonic() - started)


# -- the subscribers' process -------------------------------------------------------------


async def _subscribe(url: str, count: int, samples: int) -> None:
    """``count`` streams reading every byte; with ``samples``, the first stream parses
    events and prints receipt - event time (µs) of that many, then exits."""
    ready = 0
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=count + 1)
    timeout = httpx.Timeout(60, read=None)
    async with httpx.AsyncClient(headers=AUTH, limits=limits, timeout=timeout) as http:

        async def follow(measure: bool) -> None:
            nonlocal ready
            async with http.stream("GET", url + "/v1/events") as response:
                ready += 1
                if ready == count:
                    print("READY", flush=True)
                if not measure:
                    async for _ in response.aiter_raw():
                        pass
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        sent = json.loads(line[6:])["time"]
                        at = time.time()
                        stamp = _epoch(sent)
                        latencies.append((at - stamp) * 1e6)
                        if len(latencies) >= samples:
                            print("LAT " + json.dumps(latencies), flush=True)
                            return

        tasks = [asyncio.create_task(follow(samples > 0 and i == 0)) for i in range(count)]
        if samples:
            await tasks[0]
        else:
            await asyncio.gather(*tasks)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


@contextlib.contextmanager
def subscribers(url: str, count: int, samples: int = 0) -> subprocess.Popen[str] | None:  # type: ignore[misc]
    if count == 0:
        yield None
        return
    args = [sys.executable, "-m", "bench.bench_events", "--subscribe", url]
    args += [str(count), str(samples)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"subscribers did not connect: {line!r}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=20)


# -- main's code, for the before/after of the hot path ------------------------------------


def main_tree(base: Path) -> Path:
    """main's source under ``base``, importable as ``pageholder`` (``PYTHONPATH``)."""
    src, pkg = base / "src", base / "pkg" / "pageholder"
    src.mkdir(parents=True)
    pkg.mkdir(parents=True)
    folders = ["service", "client", "sim", "cli"]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "main", *folders], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    for folder in folders:
        (pkg / folder).symlink_to(src / folder)
    return base / "pkg"


@contextlib.contextmanager
def server_of(data_dir: str, pythonpath: Path | None = None):  # type: ignore[no-untyped-def]
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = str(pythonpath)
    try:
        server = Server(data_dir).start()
    finally:
        if pythonpath is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    with server:
        yield server


async def paced_changes(url: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:
        await http.post("/v1/holders", json={"name": "latency"})
        for i in range(count):
            pfn = NORMAL_START + 4096 + i
            await http.put(f"/v1/pages/{pfn}/hold", json={"holder": "latency"})
            await asyncio.sleep(0.002)


def main() -> None:
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        # (a) subscribers
        with server_of(str(base / "a")) as server:
            rates: dict[int, list[float]] = {0: [], 10: [], 100: []}
            for _ in range(REPS):
                for n in rates:
                    with subscribers(server.url, n):
                        rates[n].append(asyncio.run(pairs(server.url, DURATION)))
        zero = statistics.median(rates[0])
        rows.append(info_row("pairs/s, 0 subscribers", fmt_rate(zero, "pairs/s")))
        for n, target in ((10, 0.8), (100, 0.8)):
            rate = statistics.median(rates[n])
            rows.append(
                ratio_row(
                    f"pairs/s, {n} subscribers",
                    fmt_rate(rate, "pairs/s"),
                    fmt_rate(zero, "pairs/s"),
                    rate / zero,
                    target,
                )
            )
        # (b) before/after, 0 subscribers
        before_path = main_tree(base / "main")
        before: list[float] = []
        after: list[float] = []
        for rep in range(REPS):
            with server_of(str(base / f"before{rep}"), before_path) as server:
                before.append(asyncio.run(pairs(server.url, DURATION)))
            with server_of(str(base / f"after{rep}")) as server:
                after.append(asyncio.run(pairs(server.url, DURATION)))
        b, a = statistics.median(before), statistics.median(after)
        rows.append(
            ratio_row(
                "pairs/s, 0 subscribers: this tree vs main",
                fmt_rate(a, "pairs/s"),
                fmt_rate(b, "pairs/s"),
                a / b,
                0.95,
            )
        )
        # (c) latency
        with server_of(str(base / "c")) as server:
            with subscribers(server.url, 1, SAMPLES) as proc:
                assert proc is not None and proc.stdout is not None
                asyncio.run(paced_changes(server.url, SAMPLES))
                line = proc.stdout.readline()
        latencies = sorted(json.loads(line.removeprefix("LAT ")))
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        rows.append(info_row("delivery latency p50 (change made -> received)", fmt_us(p50)))
        rows.append(info_row("delivery latency p99", fmt_us(p99)))
    text = table(rows)
    print(text)
    if not QUICK:
        command = ".venv/bin/python -m bench events"
        section = header("Watch: subscribers and delivery", command, time.monotonic() - started)
        write_section("Watch: subscribers and delivery", section + text + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--subscribe":
        asyncio.run(_subscribe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
