"""Durability: set-hold throughput with the SQLite journal, and recovery at start.

Run: ``.venv/bin/python -m bench store`` (needs wrk: ``apt-get install -y wrk``).
``BENCH_QUICK=1`` makes a short run (shorter runs, 10^5 holds) that leaves RESULTS.md
alone. ``BENCH_DATA_DIR`` chooses where the on-disk stores go (default: the system's
temporary directory; the section names its file system).

(a) Two server processes (``bench._server`` with ``--stats``), one with a real data
    directory on disk (SQLite, WAL, ``synchronous=FULL``, group commit), one with
    ``--data-dir :memory:``; both up for the whole run, measured in turn. wrk, 2 threads,
    32 connections, the same time per run: ``PUT /v1/pages/{pfn}/hold`` on pfns no
    request used before (201 each). Target: durable >= 0.6x memory requests/s. The
    durable server's ``Store.commits`` is read (``GET /bench/stats``) before and after
    each run: holds written per commit is the group-commit factor.
(b) 10^6 order-0 holds (pfns in a row from the Normal zone's start, 8 holders with
    release URLs, distinct µs stamps) written straight into a ``Store``: ``Store.open``
    then one ``Store._transaction`` (the writer thread's own method) with the 8 holder
    ops and the 10^6 hold ops, no writer thread. Then, timed: ``open_durable`` +
    ``recover(Registry(layout, caller), durable.store)``, what ``create_app``'s lifespan does
    at start, against inserting the same holds (same holder objects and stamps, pfn
    order) into an empty ``RadixTree`` with ``tree.insert``. Target: recovery <= 3x
    insert. Timings run with tracemalloc off and the garbage collector on, as in the
    server; medians of REPS, alternating.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from pageholder.service.core.journal import HoldOp
from pageholder.service.core.layout import MemoryLayout
from pageholder.service.core.model import Holder
from pageholder.service.core.radix import RadixTree
from pageholder.service.core.registry import Registry
from pageholder.service.storage.recovery import open_durable, recover
from pageholder.service.storage.sqlite import Store

from ._report import header, write_section
from ._server import (
    LUA_THREAD_IDS,
    NORMAL_START,
    Row,
    Server,
    WrkResult,
    fmt_rate,
    fmt_s,
    fmt_us,
    info_row,
    lua_headers,
    ratio_row,
    run_wrk,
    table,
    wrk_path,
)

COMMAND = ".venv/bin/python -m bench store"
SECTION = "Durability"
SECONDS = 8.0
WARMUP_SECONDS = 2.0
ROUNDS = 3
THREADS = 2
CONNECTIONS = 32
SPAN = 1 << 17  # pfns per wrk thread and run
RECOVER_HOLDS = 10**6
REPS = 3
HOLDER_NAMES = [f"h{i}" for i in range(8)]
SINCE_US = 1_700_000_000_000_000


# --- (a) durable set-hold throughput --------------------------------------------------------


def put_script(run: int) -> str:
    """PUT hold on pfn base + id * SPAN + k: every request of every run a new pfn."""
    base = NORMAL_START + run * THREADS * SPAN
    return (
        LUA_THREAD_IDS
        + f"""
local h = {lua_headers("Content-Type", "application/json")}
local body = '{{"holder": "h"}}'
local k = 0
request = function()
  local pfn = {base} + id * {SPAN} + k
  k = k + 1
  if k >= {SPAN} then error("ran out of pfns") end
  return wrk.format("PUT", "/v1/pages/" .. pfn .. "/hold", h, body)
end
"""
    )


def commits(server: Server) -> int:
    answer = httpx.get(f"{server.url}/bench/stats", timeout=10, trust_env=False)
    value: int = answer.json()["commits"]
    return value


def throughput(seconds: float, rounds: int, data_root: Path) -> dict[str, list[WrkResult]]:
    runs: dict[str, list[WrkResult]] = {"memory": [], "durable": []}
    factors: list[float] = []
    data_dir = data_root / "throughput"
    with Server(str(data_dir), stats=True) as durable, Server(stats=True) as memory:
        servers = {"memory": memory, "durable": durable}
        for server in servers.values():
            headers = server.headers
            httpx.post(
                f"{server.url}/v1/holders", json={"name": "h"}, headers=headers, trust_env=False
            ).raise_for_status()
        used = dict.fromkeys(servers, 0)

        def one(name: str, seconds: float) -> WrkResult:
            server = servers[name]
            before = commits(server) if name == "durable" else 0
            result = run_wrk(
                server.url,
                put_script(used[name]),
                seconds=seconds,
                threads=THREADS,
                connections=CONNECTIONS,
            ).check(f"PUT hold ({name})")
            used[name] += 1
            if name == "durable":
                time.sleep(0.2)  # the last commits land
                factors.append(result.requests / (commits(server) - before))
            return result

        for name in servers:
            one(name, WARMUP_SECONDS)
        factors.clear()
        names = list(servers)
        for r in range(rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                result = one(name, seconds)
                runs[name].append(result)
                print(
                    f"  round {r + 1} {name:8} {result.rps:7,.0f} req/s"
                    f"  p50 {fmt_us(result.p50_us)}  p99 {fmt_us(result.p99_us)}",
                    flush=True,
                )
        held = httpx.get(f"{durable.url}/v1/holders/h", headers=durable.headers).json()
    # Every acknowledged hold is on disk: reopen the store and count.
    stored = Store.open(data_dir)
    try:
        on_disk = sum(run.nr_holds for run in stored.hold_runs())
    finally:
        stored.close_now()
    assert on_disk == held["holds"], (on_disk, held)
    THROUGHPUT_INFO["factors"] = factors
    THROUGHPUT_INFO["on_disk"] = on_disk
    return runs


THROUGHPUT_INFO: dict[str, object] = {}


# --- (b) recovery ----------------------------------------------------------------------------


def holder_of(pfn: int) -> str:
    return HOLDER_NAMES[(pfn >> 12) % len(HOLDER_NAMES)]


def write_store(data_dir: Path, n: int) -> float:
    """n holds straight into a fresh store, one transaction; returns its seconds."""
    store = Store.open(data_dir)
    try:
        ops: list[tuple[object, ...]] = [
            ("holder", name, f"http://127.0.0.1:9/{name}", 10.0, "", 1.7e9, "", "whsec_x")
            for name in HOLDER_NAMES
        ]
        ops.extend(
            HoldOp(pfn, 0, holder_of(pfn), SINCE_US + i)
            for i, pfn in enumerate(range(NORMAL_START, NORMAL_START + n))
        )
        began = time.perf_counter()
        store._transaction(ops)
        return time.perf_counter() - began
    finally:
        store.close_now()


async def no_caller(*args: object, **kwargs: object) -> object:
    raise AssertionError("recovery calls no holder")


def recover_once(data_dir: Path, layout: MemoryLayout, n: int) -> float:
    gc.collect()
    began = time.perf_counter()
    durable = open_durable(data_dir, layout)
    registry = Registry(layout, no_caller)  # type: ignore[arg-type]
    loaded = recover(registry, durable.store)
    elapsed = time.perf_counter() - began
    durable.store.close_now()
    assert loaded == n and sum(h.holds for h in registry.holders.values()) == n
    return elapsed


def recover_phases(data_dir: Path, layout: MemoryLayout) -> dict[str, float]:
    """``open_durable`` + ``recover`` again, phase by phase (information)."""
    gc.collect()
    t0 = time.perf_counter()
    durable = open_durable(data_dir, layout)
    t1 = time.perf_counter()
    runs = sum(1 for _ in durable.store.hold_runs())
    t2 = time.perf_counter()
    recover(Registry(layout, no_caller), durable.store)  # type: ignore[arg-type]
    t3 = time.perf_counter()
    durable.store.close_now()
    return {
        "open_durable (migrate check, quick_check, layout check by SQL)": t1 - t0,
        f"Store.hold_runs (streamed: {runs:,} runs)": t2 - t1,
        "recover() into the registry (streams the runs again)": t3 - t2,
    }


def insert_once(n: int) -> float:
    holders = {
        name: Holder(name, release_url=f"http://127.0.0.1:9/{name}") for name in HOLDER_NAMES
    }
    holds = [
        (pfn, holders[holder_of(pfn)], SINCE_US + i)
        for i, pfn in enumerate(range(NORMAL_START, NORMAL_START + n))
    ]
    gc.collect()
    began = time.perf_counter()
    tree = RadixTree()
    insert = tree.insert
    for pfn, holder, since in holds:
        insert(pfn, holder, 0, since)
    elapsed = time.perf_counter() - began
    assert len(tree) == n
    return elapsed


def recovery(n: int, reps: int, data_root: Path) -> dict[str, object]:
    layout = MemoryLayout.default()
    data_dir = data_root / "recovery"
    wrote = write_store(data_dir, n)
    size = sum(p.stat().st_size for p in data_dir.iterdir())
    print(f"  wrote {n:,} holds in {wrote:.1f} s ({size / 2**20:.0f} MiB)", flush=True)
    recovers: list[float] = []
    inserts: list[float] = []
    for rep in range(reps):
        for name in ("insert", "recover")[rep % 2 :] + ("insert", "recover")[: rep % 2]:
            if name == "insert":
                inserts.append(insert_once(n))
            else:
                recovers.append(recover_once(data_dir, layout, n))
            print(f"  {name} {rep + 1}: {(inserts if name == 'insert' else recovers)[-1]:.2f} s")
    phases = recover_phases(data_dir, layout)
    return {
        "wrote": wrote,
        "size": size,
        "recover": statistics.median(recovers),
        "insert": statistics.median(inserts),
        "phases": phases,
        "recovers": recovers,
        "inserts": inserts,
    }


# --- report --------------------------------------------------------------------------------


def rows_of(runs: dict[str, list[WrkResult]], rec: dict[str, object], n: int) -> list[Row]:
    def rate(name: str) -> float:
        return statistics.median(r.rps for r in runs[name])

    def latency(name: str) -> str:
        p50 = statistics.median(r.p50_us for r in runs[name])
        p99 = statistics.median(r.p99_us for r in runs[name])
        return f"p50 {fmt_us(p50)}, p99 {fmt_us(p99)}"

    ratio = statistics.median(
        d.rps / m.rps for d, m in zip(runs["durable"], runs["memory"], strict=True)
    )
    factors = THROUGHPUT_INFO["factors"]
    assert isinstance(factors, list)
    recover_s, insert_s = rec["recover"], rec["insert"]
    assert isinstance(recover_s, float) and isinstance(insert_s, float)
    phases = rec["phases"]
    assert isinstance(phases, dict)
    rows = [
        ratio_row(
            "(a) PUT hold, 32 connections, durable data dir",
            fmt_rate(rate("durable")),
            f"{fmt_rate(rate('memory'))} (`:memory:`)",
            ratio,
            0.6,
        ),
        info_row("(a) latency, durable", latency("durable")),
        info_row("(a) latency, `:memory:`", latency("memory")),
        info_row(
            "(a) group commit: holds written per commit (durable)",
            " / ".join(f"{f:.1f}" for f in factors),
        ),
        ratio_row(
            f"(b) recovery of {n:,} holds: `open_durable` + `recover`",
            fmt_s(recover_s),
            f"{fmt_s(insert_s)} (`tree.insert` x {n:,})",
            recover_s / insert_s,
            3,
            higher=False,
        ),
    ]
    for phase, seconds in phases.items():
        rows.append(info_row(f"(b) recovery phase: {phase}", fmt_s(seconds)))
    wrote, size = rec["wrote"], rec["size"]
    assert isinstance(wrote, float) and isinstance(size, int)
    rows.append(
        info_row(
            f"(b) writing the {n:,} holds (one transaction)",
            f"{fmt_s(wrote)}, {size / 2**20:.0f} MiB on disk",
        )
    )
    return rows


def filesystem(path: Path) -> str:
    """The file system type of ``path`` from /proc/mounts (longest matching mount)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
            if inside and len(mount) > len(best):
                best, kind = mount, f"{fields[2]} ({fields[0]})"
    except OSError:
        pass
    return kind


# Why a target is missed; printed under the table only for a missed one.
WHY = {
    "(a)": (
        "Every acknowledged PUT waits for the commit of its transaction (an fsync of the"
        " WAL with `synchronous=FULL`); with few requests in flight per commit (the group"
        " commit row) the fsync latency is paid by few requests."
    ),
    "(b)": (
        "Per hold, `recover` does more than `tree.insert`: `registry.place` (order,"
        " alignment, zone bisect, zone end: checks `open_durable` already made for every"
        " hold), the holder's dict lookup and counters, and the stamp maximum; before it,"
        " `Store.load` materialises every row as a tuple and `open_durable` checks each"
        " against the layout (the phase rows)."
    ),
}


def section(
    rows: list[Row], seconds: float, run_seconds: float, rounds: int, data_root: Path
) -> str:
    missed = [k for k in WHY if any(r.passed is False and r.measure.startswith(k) for r in rows)]
    notes = "".join(f"- **{k}**: {WHY[k]}\n" for k in missed)
    on_disk = THROUGHPUT_INFO["on_disk"]
    return (
        header(SECTION, COMMAND, seconds, extra=f"; data dirs on {filesystem(data_root)}")
        + "(a) two server processes, both up the whole time: one with a data directory on"
        " disk (SQLite WAL, `synchronous=FULL`, group commit), one with `--data-dir"
        " :memory:`; each `create_app` in one uvicorn worker on 127.0.0.1. wrk,"
        f" {THREADS} threads, {CONNECTIONS} connections, {run_seconds:g} s per run,"
        f" durable and memory alternating over {rounds} rounds: `PUT /v1/pages/{{pfn}}/hold"
        ' {"holder": "h"}`, every request a pfn never held before (201). Ratio: median'
        " of per-round ratios. Group commit: requests of a run / `Store.commits` added in"
        " it (one figure per round). Afterwards the durable store was reopened: it held"
        f" all {on_disk:,} acknowledged holds. (b) holds written straight into a `Store`"
        " (`Store.open`, then one `Store._transaction` with 8 holder ops and one `hold`"
        " op per pfn; pfns in a row from the Normal zone's start, 8 holders with release"
        " URLs, distinct stamps); timed: `open_durable(dir, layout)` + `recover(Registry("
        "layout, caller), snapshot)` against `tree.insert(pfn, holder, 0, stamp)` of the"
        " same holds into one empty `RadixTree`. tracemalloc off, gc on; medians of"
        f" {REPS} runs each, alternating; the phases come from one more run.\n\n"
        f"{table(rows)}\n\n" + (f"Why the misses:\n\n{notes}" if notes else "")
    )


def main() -> None:
    wrk_path()
    quick = bool(os.environ.get("BENCH_QUICK"))
    seconds = 3.0 if quick else SECONDS
    rounds = 1 if quick else ROUNDS
    n = 10**5 if quick else RECOVER_HOLDS
    base = os.environ.get("BENCH_DATA_DIR")
    began = time.perf_counter()
    data_root = Path(tempfile.mkdtemp(prefix="pageholder-bench-", dir=base))
    try:
        runs = throughput(seconds, rounds, data_root)
        rec = recovery(n, 1 if quick else REPS, data_root)
        text = section(
            rows_of(runs, rec, n), time.perf_counter() - began, seconds, rounds, data_root
        )
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    print(text)
    if not quick:
        write_section(SECTION, text)
        print(f"updated section {SECTION!r} of bench/RESULTS.md")


if __name__ == "__main__":
    main()
