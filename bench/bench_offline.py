"""Whole-block operations against page-by-page requests: offline and batch-set.

Run: ``.venv/bin/python -m bench offline`` (needs wrk: ``apt-get install -y wrk``).
``BENCH_QUICK=1`` makes a short run (fewer repetitions) that leaves RESULTS.md alone.

One server process (``bench._server``, ``--data-dir :memory:``, one uvicorn worker on
127.0.0.1) and, in this process, 8 holders, each with a real ``ReleaseReceiver`` served
on 127.0.0.1 by ``serve_receiver`` (register the holder, take its ``webhook_secret``,
start its receiver, PATCH its ``release_url``). The receivers are cooperative: every
release call is answered 204 (all released), after the signature was checked.

(a) offline: a fresh memory block fully held, 32768 order-0 holds (8 holders x 4096,
    one batch-set of one range each), then ``POST /v1/blocks/{id}/offline``; pages
    released per second of the offline request.
(b) single releases: ``POST /v1/pages/{pfn}/release`` page by page, in two modes:
    2000 pages one after the other over one keep-alive connection (httpx), and wrk
    with 32 connections for a fixed time over a fully held block (every request a
    different held pfn). Target: (a) >= 100x the faster mode of (b).
(c) batch-set of 65536 pages in one request (one range) against single ``PUT
    /v1/pages/{pfn}/hold``: 2000 pages one after the other over one keep-alive
    connection (httpx), and wrk with 32 connections for a fixed time on fresh pfns.
    Target: the batch's cost per page >= 50x lower than the faster single mode's.

Every measurement is repeated on fresh blocks, the modes alternating; the figures are
medians. Times are the client's wall time of the request, the answer read whole.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from pageholder.client._receiver import (
    ReleaseReceiver,
    ReleaseRequest,
    RunningReceiver,
    serve_receiver,
)
from pageholder.service.core.batch import batch_set, expand
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.registry import Registry

from ._report import header, write_section
from ._server import (
    BLOCK_PAGES,
    LUA_THREAD_IDS,
    NORMAL_START,
    Row,
    Server,
    fmt_rate,
    fmt_s,
    info_row,
    lua_headers,
    ratio_row,
    run_wrk_async,
    table,
    wrk_path,
)

COMMAND = ".venv/bin/python -m bench offline"
SECTION = "Offline and batch"
HOLDERS = 8
PER_HOLDER = BLOCK_PAGES // HOLDERS  # 4096
SINGLE_PAGES = 2000
BATCH_PAGES = 65536
WRK_SECONDS = 5.0
THREADS = 2
CONNECTIONS = 32
OFFLINE_REPS = 5
SINGLE_REPS = 3
TIMEOUT_S = 120.0


@dataclass
class Bench:
    server: Server
    client: httpx.AsyncClient
    receivers: list[RunningReceiver] = field(default_factory=list)
    released: Counter[str] = field(default_factory=Counter)
    _blocks: Iterator[int] = field(default_factory=lambda: iter(range(33, 128)))

    def fresh_block(self) -> int:
        """A block of the Normal zone that nothing used yet (32 is left alone)."""
        return next(self._blocks)

    def on_release(self, request: ReleaseRequest) -> None:
        self.released[request.holder] += len(request.pages)
        return None  # 204: every page released

    async def add_holders(self) -> None:
        for i in range(HOLDERS):
            name = f"h{i}"
            created = await self.client.post("/v1/holders", json={"name": name, "timeout_s": 30})
            created.raise_for_status()
            receiver = ReleaseReceiver(created.json()["webhook_secret"], self.on_release)
            running = await serve_receiver(receiver, "127.0.0.1", 0)
            self.receivers.append(running)
            patched = await self.client.patch(
                f"/v1/holders/{name}", json={"release_url": running.url}
            )
            patched.raise_for_status()

    async def batch(self, holder: str, start: int, nr_pages: int, unset: bool = False) -> float:
        """One batch-set (or batch-unset) of one range; returns the request's seconds."""
        path = "/v1/holds/batch-unset" if unset else "/v1/holds/batch-set"
        body = {"ranges": [{"start_pfn": start, "nr_pages": nr_pages}]}
        if not unset:
            body["holder"] = holder  # type: ignore[assignment]
        began = time.perf_counter()
        answer = await self.client.post(path, json=body)
        elapsed = time.perf_counter() - began
        answer.raise_for_status()
        if not unset:
            statuses = Counter(r["status"] for r in answer.json()["results"])
            assert statuses == {"created": nr_pages}, statuses
        return elapsed

    async def fill_block(self, block: int, per_holder: int = PER_HOLDER) -> int:
        """Hold ``per_holder`` pages for each holder at the start of its 4096-page part
        of ``block``; returns the pages held."""
        start = block * BLOCK_PAGES
        for i in range(HOLDERS):
            await self.batch(f"h{i}", start + i * PER_HOLDER, per_holder)
        return HOLDERS * per_holder

    async def close(self) -> None:
        for running in self.receivers:
            await running.close()


# --- (a) offline -------------------------------------------------------------------------


async def offline_once(b: Bench) -> tuple[float, float]:
    """Offline a fully held fresh block; returns (client seconds, server duration_s)."""
    block = b.fresh_block()
    pages = await b.fill_block(block)
    usage = (await b.client.get(f"/v1/blocks/{block}")).json()
    assert usage["held_pages"] == pages == BLOCK_PAGES and usage["removable"], usage
    before = sum(b.released.values())
    began = time.perf_counter()
    answer = await b.client.post(f"/v1/blocks/{block}/offline", json={"deadline_s": 60})
    elapsed = time.perf_counter() - began
    answer.raise_for_status()
    report = answer.json()
    assert report["state"] == "offline" and report["released_pages"] == pages, report
    assert report["webhook_calls"] == HOLDERS, report
    assert sum(b.released.values()) - before == pages
    return elapsed, report["duration_ms"] / 1000


# --- (b) single releases -------------------------------------------------------------------


async def release_sequential(b: Bench) -> float:
    """SINGLE_PAGES releases one after the other on one connection; pages/s."""
    block = b.fresh_block()
    start = block * BLOCK_PAGES
    await b.fill_block(block, SINGLE_PAGES // HOLDERS)
    pfns = [start + i * PER_HOLDER + j for j in range(SINGLE_PAGES // HOLDERS) for i in range(8)]
    async with httpx.AsyncClient(
        base_url=b.server.url,
        headers=b.server.headers,
        timeout=TIMEOUT_S,
        limits=httpx.Limits(max_connections=1),
        trust_env=False,
    ) as one:
        before = sum(b.released.values())
        began = time.perf_counter()
        for pfn in pfns:
            answer = await one.post(f"/v1/pages/{pfn}/release")
            if answer.status_code != 200:
                raise RuntimeError(f"release of {pfn}: {answer.status_code} {answer.text}")
        elapsed = time.perf_counter() - began
    assert sum(b.released.values()) - before == len(pfns)
    return len(pfns) / elapsed


def per_thread_script(method: str, start: int, body: str | None = None) -> str:
    """wrk: ``method`` on ``/v1/pages/{pfn}/...``, pfn = start + thread id * 16384 + k:
    every request of a run a different pfn of one block."""
    span = BLOCK_PAGES // THREADS
    suffix = "release" if method == "POST" else "hold"
    headers = lua_headers("Content-Type", "application/json") if body else lua_headers()
    body_arg = f", '{body}'" if body else ""
    return (
        LUA_THREAD_IDS
        + f"""
local h = {headers}
local k = 0
request = function()
  local pfn = {start} + id * {span} + k
  k = k + 1
  if k >= {span} then error("ran out of pfns") end
  return wrk.format("{method}", "/v1/pages/" .. pfn .. "/{suffix}", h{body_arg})
end
"""
    )


async def release_wrk(b: Bench) -> float:
    """wrk, 32 connections, WRK_SECONDS, over a fully held fresh block; pages/s."""
    block = b.fresh_block()
    await b.fill_block(block)
    before = sum(b.released.values())
    result = await run_wrk_async(
        b.server.url,
        per_thread_script("POST", block * BLOCK_PAGES),
        seconds=WRK_SECONDS,
        threads=THREADS,
        connections=CONNECTIONS,
    )
    result.check("single releases (wrk)")
    await asyncio.sleep(0.5)  # releases wrk did not wait for finish
    assert sum(b.released.values()) - before >= result.requests
    return result.rps


# --- (c) batch-set against single PUTs ------------------------------------------------------


async def batch_set_once(b: Bench) -> float:
    """One batch-set of BATCH_PAGES pages (two fresh blocks); seconds per page."""
    first = b.fresh_block()
    assert b.fresh_block() == first + 1
    start = first * BLOCK_PAGES
    elapsed = await b.batch("h0", start, BATCH_PAGES)
    await b.batch("h0", start, BATCH_PAGES, unset=True)
    return elapsed / BATCH_PAGES


async def put_sequential(b: Bench) -> float:
    """SINGLE_PAGES PUTs one after the other on one connection; seconds per page."""
    start = b.fresh_block() * BLOCK_PAGES
    async with httpx.AsyncClient(
        base_url=b.server.url,
        headers=b.server.headers,
        timeout=TIMEOUT_S,
        limits=httpx.Limits(max_connections=1),
        trust_env=False,
    ) as one:
        began = time.perf_counter()
        for pfn in range(start, start + SINGLE_PAGES):
            answer = await one.put(f"/v1/pages/{pfn}/hold", json={"holder": "h0"})
            if answer.status_code != 201:
                raise RuntimeError(f"hold of {pfn}: {answer.status_code} {answer.text}")
        elapsed = time.perf_counter() - began
    await b.batch("h0", start, SINGLE_PAGES, unset=True)
    return elapsed / SINGLE_PAGES


async def put_wrk(b: Bench) -> float:
    """wrk, 32 connections, WRK_SECONDS, PUT on fresh pfns; seconds per page."""
    start = b.fresh_block() * BLOCK_PAGES
    result = await run_wrk_async(
        b.server.url,
        per_thread_script("PUT", start, '{"holder": "h0"}'),
        seconds=WRK_SECONDS,
        threads=THREADS,
        connections=CONNECTIONS,
    )
    result.check("single PUTs (wrk)")
    await asyncio.sleep(0.5)
    await b.batch("h0", start, BLOCK_PAGES, unset=True)
    return 1 / result.rps


async def batch_in_process(reps: int) -> dict[str, list[float]]:
    """``batch_set`` of BATCH_PAGES pages straight on a ``Registry`` (no HTTP), garbage
    collector on and off in turn; seconds per batch. Where the batch's time goes."""
    registry = Registry(MemoryLayout.default(), _no_caller)  # type: ignore[arg-type]
    await registry.add_holder("h0", release_url="http://127.0.0.1:9/")
    got: dict[str, list[float]] = {"gc on": [], "gc off": []}
    start = NORMAL_START
    for rep in range(reps):
        for mode in ("gc on", "gc off")[rep % 2 :] + ("gc on", "gc off")[: rep % 2]:
            entries = expand([], [(start, BATCH_PAGES)])
            gc.collect()
            if mode == "gc off":
                gc.disable()
            try:
                began = time.perf_counter()
                await batch_set(registry, "h0", entries)
                got[mode].append(time.perf_counter() - began)
            finally:
                gc.enable()
            start += BATCH_PAGES
    return got


async def _no_caller(*args: object, **kwargs: object) -> object:
    raise AssertionError("no release here")


# --- the run ------------------------------------------------------------------------------


async def measure(quick: bool) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {
        k: []
        for k in (
            "offline s",
            "offline server s",
            "release seq",
            "release wrk",
            "batch",
            "put seq",
            "put wrk",
        )
    }
    offline_reps = 2 if quick else OFFLINE_REPS
    single_reps = 1 if quick else SINGLE_REPS
    with Server() as server:
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.headers, timeout=TIMEOUT_S, trust_env=False
        ) as client:
            b = Bench(server, client)
            try:
                await b.add_holders()
                # Warm-up: the server's connections to every receiver, each path once.
                warm = b.fresh_block()
                for i in range(HOLDERS):
                    await b.batch(f"h{i}", warm * BLOCK_PAGES + i * PER_HOLDER, 2)
                (await client.post(f"/v1/pages/{warm * BLOCK_PAGES}/release")).raise_for_status()
                (await client.post(f"/v1/blocks/{warm}/offline", json={})).raise_for_status()

                for rep in range(offline_reps):
                    seconds, server_seconds = await offline_once(b)
                    got["offline s"].append(seconds)
                    got["offline server s"].append(server_seconds)
                    print(f"  offline {rep + 1}: {BLOCK_PAGES / seconds:,.0f} pages/s", flush=True)
                for rep in range(single_reps):
                    modes = [("release seq", release_sequential), ("release wrk", release_wrk)]
                    for name, run in modes[rep % 2 :] + modes[: rep % 2]:
                        got[name].append(await run(b))
                        print(f"  {name} {rep + 1}: {got[name][-1]:,.0f} pages/s", flush=True)
                for rep in range(single_reps):
                    modes = [("batch", batch_set_once), ("put seq", put_sequential)]
                    modes.append(("put wrk", put_wrk))
                    for name, run in modes[rep % 3 :] + modes[: rep % 3]:
                        got[name].append(await run(b))
                        print(f"  {name} {rep + 1}: {fmt_s(got[name][-1])}/page", flush=True)
            finally:
                await b.close()
    in_process = await batch_in_process(2 if quick else 2 * single_reps)
    got["batch gc on"] = in_process["gc on"]
    got["batch gc off"] = in_process["gc off"]
    return got


def rows_of(got: dict[str, list[float]]) -> tuple[list[Row], str]:
    med = {k: statistics.median(v) for k, v in got.items()}
    offline_rate = BLOCK_PAGES / med["offline s"]
    seq, conc = med["release seq"], med["release wrk"]
    faster_release = "one connection" if seq >= conc else "wrk, 32 connections"
    put_seq, put_conc = med["put seq"], med["put wrk"]
    faster_put = "one connection" if put_seq <= put_conc else "wrk, 32 connections"
    batch = med["batch"]
    rows = [
        ratio_row(
            f"(a) offline of a fully held block, {BLOCK_PAGES:,} holds, pages/s",
            fmt_rate(offline_rate, "pages/s"),
            f"{fmt_rate(max(seq, conc), 'pages/s')} ((b), {faster_release})",
            offline_rate / max(seq, conc),
            100,
        ),
        info_row(
            "(a) offline request time (server's `duration_ms`)",
            f"{fmt_s(med['offline s'])} ({fmt_s(med['offline server s'])})",
        ),
        info_row(
            f"(b) single releases, {SINGLE_PAGES} one by one, one connection",
            fmt_rate(seq, "pages/s"),
        ),
        info_row(
            f"(b) single releases, wrk {CONNECTIONS} connections, {WRK_SECONDS:g} s",
            fmt_rate(conc, "pages/s"),
        ),
        ratio_row(
            f"(c) batch-set of {BATCH_PAGES:,} pages (one range), time per page",
            f"{fmt_s(batch)} ({fmt_s(batch * BATCH_PAGES)} in all)",
            f"{fmt_s(min(put_seq, put_conc))} (single PUT, {faster_put})",
            min(put_seq, put_conc) / batch,
            50,
        ),
        info_row(
            f"(c) single PUT, {SINGLE_PAGES} one by one, one connection, time per page",
            f"{fmt_s(put_seq)} ({fmt_rate(1 / put_seq, 'pages/s')})",
        ),
        info_row(
            f"(c) single PUT, wrk {CONNECTIONS} connections, {WRK_SECONDS:g} s, time per page",
            f"{fmt_s(put_conc)} ({fmt_rate(1 / put_conc, 'pages/s')})",
        ),
        info_row(
            f"(c) in-process `batch_set` of {BATCH_PAGES:,} pages (no HTTP): gc on / gc off",
            f"{fmt_s(med['batch gc on'])} / {fmt_s(med['batch gc off'])}",
            "",
            f"{med['batch gc on'] / med['batch gc off']:.2f}x",
        ),
    ]
    return rows, faster_release


# Why a target is missed; printed under the table only for a missed one.
WHY = {
    "(a)": (
        "The offline's cost is per page in the server (gang lookup, marks, one settle per"
        " hold under the write lock, the webhook body of 4096 pages per holder) and in the"
        " receivers (parse and verify 4096 pages); single releases cost one HTTP request"
        " and one webhook round trip each."
    ),
    "(c)": (
        "The batch still spends microseconds per page in Python. The in-process row above"
        " splits it: `batch_set` alone (no HTTP) is most of it, and the garbage collector"
        " makes up much of that: every entry allocates several tracked objects (the op"
        " tuple, `SetResult`, `Hold`, `BatchItem`), which triggers collections, and the"
        " older ones walk every tree node and hold in the heap, so their cost grows with"
        " the registry. Then the route builds one pydantic `BatchResultItem` per page and"
        " serialises an answer of about 4.6 MB that lists every page. (A cProfile of three"
        " such batches in the server, taken once: `batch._run` ~80% of the request,"
        " building the response models ~18%.) The baseline is a whole HTTP request per"
        " page, so anything that makes requests cheaper (the thread-pool hops of the"
        " dependencies, see HTTP API) raises the bar for the batch too."
    ),
}


def section(rows: list[Row], seconds: float, reps: tuple[int, int]) -> str:
    missed = [k for k in WHY if any(r.passed is False and r.measure.startswith(k) for r in rows)]
    notes = "".join(f"- **{k}**: {WHY[k]}\n" for k in missed)
    return (
        header(SECTION, COMMAND, seconds)
        + "One server process (`create_app`, `--data-dir :memory:`, one uvicorn worker on"
        f" 127.0.0.1) and {HOLDERS} holders, each with a real `ReleaseReceiver` served by"
        " `serve_receiver` on 127.0.0.1 in the benchmark's process (registered, its"
        " `webhook_secret` given to the receiver, `release_url` set by PATCH); every"
        " release call is verified and answered 204. (a) a fresh block fully held:"
        f" {HOLDERS} x {PER_HOLDER} order-0 holds (one batch-set range per holder), then"
        " `POST /v1/blocks/{id}/offline`: pages / wall time of that request. (b) `POST"
        f" /v1/pages/{{pfn}}/release` page by page: {SINGLE_PAGES} pages (250 per holder)"
        " one after the other over one keep-alive httpx connection, and wrk with"
        f" {CONNECTIONS} connections for {WRK_SECONDS:g} s over a fully held block, every"
        " request a different pfn; (a) is compared with the faster mode. (c) one"
        f" batch-set of {BATCH_PAGES:,} pages (one range, two fresh blocks; the answer"
        f" lists every page) against `PUT /v1/pages/{{pfn}}/hold`: {SINGLE_PAGES} pages"
        " one after the other over one keep-alive httpx connection, and wrk with"
        f" {CONNECTIONS} connections for {WRK_SECONDS:g} s on fresh pfns; the batch is"
        " compared with the faster mode. Times are the client's wall time with the answer"
        f" read whole. Medians of {reps[0]} offline and {reps[1]} repetitions of each"
        " other mode (fresh blocks each time, modes alternating). The in-process row runs"
        " `batch_set` on a fresh `Registry` in the benchmark's process, the collector on"
        " and off in turn, the registry growing by one batch each time.\n\n"
        f"{table(rows)}\n\n" + (f"Why the misses:\n\n{notes}" if notes else "")
    )


def main() -> None:
    wrk_path()
    quick = bool(os.environ.get("BENCH_QUICK"))
    began = time.perf_counter()
    got = asyncio.run(measure(quick))
    rows, _ = rows_of(got)
    reps = (len(got["offline s"]), len(got["batch"]))
    text = section(rows, time.perf_counter() - began, reps)
    print(text)
    if not quick:
        write_section(SECTION, text)
        print(f"updated section {SECTION!r} of bench/RESULTS.md")


if __name__ == "__main__":
    main()
