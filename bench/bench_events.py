"""Watch: what subscribers cost the writers, and how fast an event reaches them.

Run: ``.venv/bin/python -m bench events`` (needs wrk). ``BENCH_QUICK=1`` makes short
runs and leaves RESULTS.md alone.

Every server is ``bench._server`` with a real data directory (SQLite, WAL,
``synchronous=FULL``: every revision is written with its change), one worker.

Pinning (on a machine with at least 2 CPUs): the server, every one of its threads, runs
on the first CPU; the load generator (wrk) and the subscribers' process on the second,
for 0, 10 and 100 subscribers alike. So the subscribers' own parsing does not take the
server's CPU, and the server's per-subscriber work shows as fewer pairs/s.

(a) Set+unset pairs: wrk, 2 threads, 16 connections, ``PUT /v1/pages/{pfn}/hold``
    then, once it is answered, ``DELETE`` of the same pfn (``bench_http.pairs_script``),
    for DURATION s, with 0, 10 and 100 subscribers connected (``GET /v1/events``, admin
    token, every event) in one child process (``bench/_reader.c``, built with cc: every
    byte copied to a file in /dev/shm, nothing parsed during the run; each file checked
    after it by ``bench._readers.verify``: every event parsed, revisions whole, in order,
    no gap; without cc, ``bench._readers raw``). Pairs/s with N
    subscribers over pairs/s with 0 in the same round on the same server (the mean of
    a 0 run before and one after: 0, 10, 100, 0), median of ROUNDS rounds. Target:
    >= 0.8 at 100. Also the server's own account of what the 100 subscribers cost it
    (``/metrics``: the CPU time of the rings' writes, kernel time included, and of
    framing events), as shares of the run's wall time. Also: the same ratio at 100 against a server
    running main's code, in the same rounds; the server's CPU per pair (utime + stime
    of its process and threads, ``/proc``), this tree's and main's; and the ratio with
    100 SDK readers (``AsyncPageHolderClient.watch()``, ``bench._readers sdk``), which
    parse every event into objects on the load generator's CPU and fall behind, and with
    100 Python raw readers; and the CPU split of each run (server, wrk, readers, idle).
(b) The hot path before and after: the same pairs with 0 subscribers against a server
    running main's code (``git archive main``, put first on ``PYTHONPATH``) and one
    running this tree's, alternating, medians of ROUNDS runs. Target: >= 0.95.
(c) Delivery latency: one subscriber in a child process (httpx, parsing every event;
    with 99 C readers connected beside it in the second measure); this process holds
    one page at a time (paced); for each event, the receipt time minus the event's
    ``time`` (when the registry made the change, before its commit: so this is commit +
    delivery), p50/p99 over SAMPLES events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ._readers import build_c_reader, verify
from ._report import header, write_section
from ._server import (
    NORMAL_START,
    ROOT,
    TOKEN,
    Row,
    Server,
    fmt_rate,
    fmt_us,
    info_row,
    ratio_row,
    run_wrk,
    table,
)
from .bench_http import check_pairs, pairs_script

QUICK = bool(os.environ.get("BENCH_QUICK"))
DURATION = 2.0 if QUICK else 6.0
REPS = 1 if QUICK else 3
#: pfns per wrk thread and run: 30 runs of a server fit the default layout's zone
RUN_SPAN = 1 << 14
#: rounds of the subscriber runs (each 0, 10, 100, 0 subscribers, and main's 0, 100, 0)
ROUNDS = 1 if QUICK else 4
CONNECTIONS = 16
THREADS = 2  # as bench_http.pairs_script lays out its pfns
SAMPLES = 200 if QUICK else 1000
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COUNTS = (0, 10, 100)
#: the server's CPU, and the load generator's and subscribers' (None: not pinned)
CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS, CLIENT_CPUS = ({CPUS[0]}, {CPUS[1]}) if len(CPUS) >= 2 else (None, None)


def pin(pid: int, cpus: set[int] | None) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    if cpus is None:
        return
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cpus)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (idle + iowait ticks, all ticks) so far, from ``/proc/stat``."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(f) for f in fields[:8]]
            times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def children_cpu() -> float:
    """utime + stime of this process's ended and waited-for children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One pairs run: pairs/s, the server's CPU per pair, and where the CPU went: shares
    of one CPU over the run's wall time (server, wrk, the readers' process) and the idle
    share of the server's CPU and of the client's."""

    rate: float
    cpu_per_pair: float
    server: float
    wrk: float
    readers: float
    idle_server_cpu: float
    idle_client_cpu: float
    #: shares of the wall time the server spent in the rings' writes and in framing
    #: events (its /metrics; NaN when it has none, as main's code)
    fanout: float = math.nan
    framing: float = math.nan


class Pairs:
    """wrk's set+unset pairs against one server; each run takes fresh pfns."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.runs = 0
        httpx.post(
            server.url + "/v1/holders", json={"name": "h"}, headers=AUTH, trust_env=False
        ).raise_for_status()

    def run(self, seconds: float, readers_pid: int | None = None) -> Run:
        """Pairs/s, the server's CPU seconds per pair, and the CPU split."""
        script = pairs_script(self.runs, RUN_SPAN)
        self.runs += 1
        assert self.server.proc is not None
        pid = self.server.proc.pid
        before = cpu_seconds(pid)
        readers_before = cpu_seconds(readers_pid) if readers_pid else 0.0
        spent_before = event_cpu(self.server.url)
        wrk_before, ticks_before, started = children_cpu(), cpu_times(), time.monotonic()
        result = run_wrk(
            self.server.url, script, seconds=seconds, threads=THREADS, connections=CONNECTIONS
        ).check("pairs")
        wall = time.monotonic() - started
        spent = event_cpu(self.server.url)
        wrk, ticks = children_cpu() - wrk_before, cpu_times()
        used = cpu_seconds(pid) - before
        readers = cpu_seconds(readers_pid) - readers_before if readers_pid else 0.0
        check_pairs(result)

        def idle(cpus: set[int] | None) -> float:
            if cpus is None:
                return math.nan
            cpu = min(cpus)
            return (ticks[cpu][0] - ticks_before[cpu][0]) / max(
                ticks[cpu][1] - ticks_before[cpu][1], 1
            )

        return Run(
            rate=result.deletes / result.seconds,
            cpu_per_pair=used / max(result.deletes, 1),
            server=used / wall,
            wrk=wrk / wall,
            readers=readers / wall,
            idle_server_cpu=idle(SERVER_CPUS),
            idle_client_cpu=idle(CLIENT_CPUS),
            fanout=(spent[0] - spent_before[0]) / wall,
            framing=(spent[1] - spent_before[1]) / wall,
        )


#: the server's counters of what its event streams cost (``/metrics``)
FANOUT_METRIC = "pageholder_event_fanout_cpu_seconds_total"
FRAMING_METRIC = "pageholder_event_framing_cpu_seconds_total"


def event_cpu(url: str) -> tuple[float, float]:
    """CPU seconds the server's rings spent writing and framing so far (NaN: no such
    metrics)."""
    text = httpx.get(url + "/metrics", headers=AUTH, trust_env=False).text
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (FANOUT_METRIC, FRAMING_METRIC):
            found[name] = float(value)
    return found.get(FANOUT_METRIC, math.nan), found.get(FRAMING_METRIC, math.nan)


def poke(url: str, stop: threading.Event) -> None:
    """Changes every 50 ms until ``stop`` (SDK readers are ready at their first event)."""
    with httpx.Client(base_url=url, headers=AUTH, trust_env=False) as http:
        http.post("/v1/holders", json={"name": "poke"})
        pfn = NORMAL_START + 8192
        while not stop.wait(0.05):
            http.put(f"/v1/pages/{pfn}/hold", json={"holder": "poke"})
            http.delete(f"/v1/pages/{pfn}/hold")


#: the C readers' program (``main`` builds it; None: no cc here, the Python ones instead)
C_READER: Path | None = None
#: where the C readers write their streams: tmpfs if there is one
SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
#: the longest a reader process may run (its loop ends by then whatever happens)
READER_MAX_S = 600


def fast_kind() -> str:
    """The cheapest honest readers here: ``c`` when built, else ``raw`` (Python)."""
    return "c" if C_READER is not None else "raw"


@contextlib.contextmanager
def readers(url: str, count: int, kind: str = "fast") -> Iterator[dict[str, object]]:
    """``count`` subscribers in a child process; in the block, ``report["pid"]`` is its
    process; after the block, what they counted (``c``: checked from their recordings,
    after the process ended)."""
    report: dict[str, object] = {}
    if count == 0:
        yield report
        return
    if kind == "fast":
        kind = fast_kind()
    record: Path | None = None
    if kind == "c":
        assert C_READER is not None
        record = Path(tempfile.mkdtemp(prefix="bench-events-", dir=SHM))
        split = urlsplit(url)
        args = [str(C_READER), str(split.hostname), str(split.port), TOKEN, str(count)]
        args += [str(record), str(READER_MAX_S)]
    else:
        args = [sys.executable, "-m", "bench._readers", kind, url, TOKEN, str(count)]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    report["pid"] = proc.pid
    stop = threading.Event()
    poker = threading.Thread(target=poke, args=(url, stop)) if kind == "sdk" else None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if poker is not None:
            poker.start()
        line = proc.stdout.readline()
        stop.set()
        if poker is not None:
            poker.join()
        if not line.startswith("READY"):
            raise RuntimeError(f"subscribers did not connect: {line!r}")
        yield report
        proc.stdin.close()
        line = proc.stdout.readline()
        if record is None:
            report.update(json.loads(line.removeprefix("DONE ")))
        else:
            if not line.startswith("DONE "):
                raise RuntimeError(f"the C readers did not end well: {line!r}")
            proc.wait(timeout=20)
            checked = [verify((record / str(i)).read_bytes()) for i in range(count)]
            problems = [c.problem for c in checked if c.problem]
            report["events"] = [c.events for c in checked]
            report["ordered"] = not problems
            report["problems"] = problems[:3]
    finally:
        stop.set()
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=20)
        if record is not None:
            shutil.rmtree(record, ignore_errors=True)


def subscribed_run(pairs: Pairs, count: int, kind: str = "fast") -> tuple[Run, float]:
    """One pairs run with ``count`` subscribers, and the share of the run's events the
    slowest reader had read when it ended. Checks that raw and C readers read every
    event, and that every reader saw the ids in order (C readers: every revision, each
    whole, no gap)."""
    server = pairs.server
    assert server.proc is not None
    with readers(server.url, count, kind) as report:
        if count:
            time.sleep(0.5)  # the streams' first bytes are out
        pid = report.get("pid")
        run = pairs.run(DURATION, pid if isinstance(pid, int) else None)
    read = 1.0
    if count:
        events = report["events"]
        assert isinstance(events, list) and report["ordered"], report
        read = min(events) / (2 * run.rate * DURATION)  # 2 events a pair
        # raw and C readers keep up: every one read (about) all of the run's events
        assert kind == "sdk" or read >= 0.9, (min(events), run.rate)
    return run, read


# -- delivery latency ---------------------------------------------------------------------


async def _latency(url: str, samples: int) -> None:
    """One stream parsing every event; prints receipt - event time (µs) of ``samples``."""
    latencies: list[float] = []
    timeout = httpx.Timeout(60, read=None)
    async with httpx.AsyncClient(headers=AUTH, timeout=timeout, trust_env=False) as http:
        async with http.stream("GET", url + "/v1/events") as response:
            print("READY", flush=True)
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    sent = json.loads(line[6:])["time"]
                    latencies.append((time.time() - _epoch(sent)) * 1e6)
                    if len(latencies) >= samples:
                        print("LAT " + json.dumps(latencies), flush=True)
                        return


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def paced_changes(url: str, count: int, first: int) -> None:
    """``count`` holds of fresh pfns from ``first``, one at a time, 2 ms apart."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:
        await http.post("/v1/holders", json={"name": "latency"})
        for i in range(count):
            pfn = first + i
            await http.put(f"/v1/pages/{pfn}/hold", json={"holder": "latency"})
            await asyncio.sleep(0.002)


def latency(url: str, others: int, first: int) -> tuple[float, float]:
    """p50, p99 (µs) of one subscriber's delivery latency, ``others`` raw readers beside."""
    args = [sys.executable, "-m", "bench.bench_events", "--latency", url, str(SAMPLES)]
    with readers(url, others):
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            if not proc.stdout.readline().startswith("READY"):
                raise RuntimeError("the latency subscriber did not connect")
            time.sleep(0.2)
            asyncio.run(paced_changes(url, SAMPLES, first))
            line = proc.stdout.readline()
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=20)
    latencies = sorted(json.loads(line.removeprefix("LAT ")))
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]


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
def server_of(data_dir: str, pythonpath: Path | None = None) -> Iterator[Server]:
    """A server of this tree (or of ``pythonpath``), pinned to the server's CPU."""
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = str(pythonpath)
    server = Server(data_dir)
    try:
        server.start()
    finally:
        if pythonpath is not None:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    try:
        assert server.proc is not None
        pin(server.proc.pid, SERVER_CPUS)
        yield server
    finally:
        server.__exit__(None, None, None)


def fmt_cpu(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms CPU/pair"


#: What the section says above its table (how the numbers were made).
METHOD = """\
Load: wrk (C; 2 threads, 16 connections, PUT-hold then DELETE of the same pfn, SQLite
with synchronous=FULL). Pinning: the server and all its threads on CPU {server}; wrk and
the subscribers' process on CPU {client}, for 0, 10 and 100 alike. Subscribers ("C
readers", bench/_reader.c built with the system's cc): one process, one epoll loop
woken at most every 5 ms, every byte of every stream copied to a file in /dev/shm,
nothing parsed while wrk runs; after each run every file is checked in Python
(bench._readers.verify: head 200 + chunked, framing undone, every event's data parsed,
the parts of a revision 1..parts with the id on the last only, each revision the one
after the last: no gap, the admin sees all; each reader read >= 0.9 of the run's
events). Why: the Python epoll readers (kept as a row, same rounds) parse ~300k
events/s at 100 subscribers on the load generator's CPU, 0.4-0.6 of it; the C readers
take ~0.07. CPU split: shares of one CPU over a run's wall time, medians: the server
process (utime + stime, /proc), wrk (RUSAGE_CHILDREN), the readers' process, and the
idle share of each CPU (/proc/stat); what is neither is the machine's other work.
Ratios are per round (same server, back to back: 0, 10, 100, then 0 subscribers again,
each ratio to the mean of the round's two zeros, which cancels a drift of the
machine's speed across the round) and their median over {rounds} rounds. Server CPU per
pair: the server process's utime + stime over the pairs done.

"""


def main() -> None:
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    rows = []
    own = os.sched_getaffinity(0)
    if CLIENT_CPUS is not None:
        os.sched_setaffinity(0, CLIENT_CPUS)  # wrk and the readers inherit it
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = measure(Path(tmp))
    finally:
        os.sched_setaffinity(0, own)
    text = table(rows)
    print(text)
    if not QUICK:
        command = ".venv/bin/python -m bench events"
        load = f"; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        section = header(
            "Watch: subscribers and delivery", command, time.monotonic() - started, load
        )
        method = METHOD.format(
            server=min(SERVER_CPUS or {0}), client=min(CLIENT_CPUS or {0}), rounds=ROUNDS
        )
        write_section("Watch: subscribers and delivery", section + method + text + "\n")


def measure(base: Path) -> list[Row]:
    global C_READER
    rows: list[Row] = []
    C_READER = build_c_reader(base)
    fast = "C readers" if C_READER is not None else "Python raw readers"
    # (a) subscribers
    runs: dict[int, list[Run]] = {n: [] for n in COUNTS}
    ratios: dict[int, list[float]] = {n: [] for n in COUNTS}
    py_runs: list[Run] = []  # 100 Python raw readers (the readers before the C ones)
    py_ratios: list[float] = []
    sdk: list[float] = []
    sdk_read: list[float] = []
    main_ratios: list[float] = []  # 100 fast readers, main's code
    main_cpus: dict[int, list[float]] = {0: [], 100: []}
    before_path = main_tree(base / "main")
    with server_of(str(base / "a")) as server, server_of(str(base / "m"), before_path) as old:
        pairs, old_pairs = Pairs(server), Pairs(old)
        for _ in range(ROUNDS):
            # 0, 10, 100, then 0 again: each ratio is to the mean of the round's two
            # zeros, which cancels a drift of the machine's speed across the round
            for n in COUNTS:
                run, _ = subscribed_run(pairs, n)
                runs[n].append(run)
            again, _ = subscribed_run(pairs, 0)
            zero = (runs[0][-1].rate + again.rate) / 2
            runs[0].append(again)
            for n in COUNTS[1:]:
                ratios[n].append(runs[n][-1].rate / zero)
            if C_READER is not None:
                run, _ = subscribed_run(pairs, 100, "raw")
                py_runs.append(run)
                py_ratios.append(run.rate / zero)
            run, read = subscribed_run(pairs, 100, "sdk")
            sdk.append(run.rate / zero)
            sdk_read.append(read)
            old_zero, _ = subscribed_run(old_pairs, 0)
            old_hundred, _ = subscribed_run(old_pairs, 100)
            old_again, _ = subscribed_run(old_pairs, 0)
            main_ratios.append(old_hundred.rate / ((old_zero.rate + old_again.rate) / 2))
            main_cpus[0] += [old_zero.cpu_per_pair, old_again.cpu_per_pair]
            main_cpus[100].append(old_hundred.cpu_per_pair)
    zero = statistics.median(r.rate for r in runs[0])
    rows.append(info_row("pairs/s, 0 subscribers", fmt_rate(zero, "pairs/s")))
    for n in COUNTS[1:]:
        rate = statistics.median(r.rate for r in runs[n])
        rows.append(
            ratio_row(
                f"pairs/s, {n} subscribers ({fast})",
                fmt_rate(rate, "pairs/s"),
                fmt_rate(zero, "pairs/s"),
                statistics.median(ratios[n]),
                0.8,
            )
        )
    rows.append(info_row("per-round ratios at 100", spread(ratios[100])))
    if py_ratios:
        rows.append(
            info_row(
                "pairs/s, 100 Python raw readers (epoll, parsing as they read; same rounds)",
                fmt_rate(statistics.median(r.rate for r in py_runs), "pairs/s"),
                "",
                f"{statistics.median(py_ratios):.2f}x ({spread(py_ratios)})",
            )
        )
    rows.append(
        info_row(
            f"the same ratio at 100 with main's code ({fast}; same run)",
            "",
            "",
            f"{statistics.median(main_ratios):.2f}x ({spread(main_ratios)})",
        )
    )
    rows.append(
        info_row(
            "pairs/s, 100 SDK client.watch() readers (their parsing on the load generator's CPU)",
            f"{statistics.median(sdk_read):.0%} of the run's events read by its end",
            "",
            f"{statistics.median(sdk):.2f}x ({spread(sdk)})",
        )
    )
    for n in COUNTS:
        baseline = ""
        if n in main_cpus:
            baseline = f"main: {fmt_cpu(statistics.median(main_cpus[n]))}"
        rows.append(
            info_row(
                f"server CPU per pair, {n} subscribers",
                fmt_cpu(statistics.median(r.cpu_per_pair for r in runs[n])),
                baseline,
            )
        )
    hundred = runs[100]
    rows.append(
        info_row(
            "server CPU in the rings' writes (kernel time included), 100 subscribers",
            f"{statistics.median(r.fanout for r in hundred):.3f} of the wall time",
        )
    )
    rows.append(
        info_row(
            "server CPU framing events (each once, however many subscribers), 100 subscribers",
            f"{statistics.median(r.framing for r in hundred):.3f} of the wall time",
        )
    )
    splits = [(f"{n} subscribers ({fast})" if n else "0 subscribers", runs[n]) for n in COUNTS]
    if py_runs:
        splits.append(("100 Python raw readers", py_runs))
    for label, these in splits:
        rows.append(info_row(f"CPU split, {label}", cpu_split(these)))
    # (b) before/after, 0 subscribers
    before: list[float] = []
    after: list[float] = []
    for rep in range(ROUNDS):
        with server_of(str(base / f"before{rep}"), before_path) as server:
            before.append(Pairs(server).run(DURATION).rate)
        with server_of(str(base / f"after{rep}")) as server:
            after.append(Pairs(server).run(DURATION).rate)
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
        for i, others in enumerate((0, 99)):
            p50, p99 = latency(server.url, others, NORMAL_START + (i + 1) * 4096)
            beside = f", {others} other subscribers" if others else ""
            what = f"delivery latency p50 (change made -> received{beside})"
            rows.append(info_row(what, fmt_us(p50)))
            rows.append(info_row(f"delivery latency p99{beside}", fmt_us(p99)))
    return rows


def cpu_split(runs: list[Run]) -> str:
    """Medians, in shares of one CPU over the run: who used the two CPUs."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    return (
        f"server CPU: server {med([r.server for r in runs]):.2f}, "
        f"idle {med([r.idle_server_cpu for r in runs]):.2f}; "
        f"client CPU: wrk {med([r.wrk for r in runs]):.2f}, "
        f"readers {med([r.readers for r in runs]):.2f}, "
        f"idle {med([r.idle_client_cpu for r in runs]):.2f}"
    )


def spread(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--latency":
        asyncio.run(_latency(sys.argv[2], int(sys.argv[3])))
    else:
        main()
