"""Loop stalls: lookup latency while big work runs (issue 11, finding 4).

Run: ``.venv/bin/python -m bench stall [CASE ...]``. ``BENCH_QUICK=1`` makes a short
run that leaves RESULTS.md alone. Cases by letter (``python -m bench stall a a'``, or
``BENCH_STALL_CASES=a,a'``) run only those cases and replace only their rows in
RESULTS.md (with a note of when, and the load). ``BENCH_STALL_MAIN=1``
runs the chosen cases on main's code too, in the same run, and writes those rows
beside them ("main's code"), for a before/after.

One real server (``bench._server``, a durable data directory in a temporary folder,
one uvicorn worker on 127.0.0.1) and, in this process, a plain HTTP release handler on
127.0.0.1 that answers as its path says (``/refuse``: 500; ``/big``: 200 with a
per-page failure list of about 4 MiB; ``/long``: 200 with every page failed, each with
an error of 200 characters, the longest answer the registry reads; ``/ok``: 204).

A *probe* is a child process (``python -m bench.bench_stall probe URL PFN SECONDS``)
that looks ``PFN`` up every ``PERIOD_S`` (10 ms) over one keep-alive connection, on a fixed
schedule: a request's latency is counted from the moment it was due, so a stall of
300 ms counts as the ~30 lookups it delayed, not as one (no coordinated omission).
The baseline is the same probe with nothing else running, measured in the same run.

Cases, each run back to back for the probe's duration, probed in another zone (DMA32)
and, where the work locks one, in the same zone (Normal):
(a) batch-set of 65,536 pages (one range) then batch-unset of them, over and over;
    (a') the same 65,536 pages given as a ``pages`` list (body validation included);
(b) offline of a block with 32,768 holds whose holder refuses (500): a report of
    32,768 failures, the block back online, again;
(c) the same offline with a holder answering ~4 MiB of per-page failures per call (over
    the answer limit: refused unread); (c') the same with the longest answers that are
    read (~0.9 MiB per call of 4096 pages);
(d) PATCH of a holder without holds (release_url set and unset) with 524,288 holds in
    the registry; (d') the same PATCH of the holder of those 524,288 holds (every
    hold's "no handler" mark follows);
(e) a holder's batch of 70,000 pages (over the 65,536 limit; 413);
(f) four unauthenticated clients sending 8 MiB bodies (401);
(g) DELETE ?force=true of a holder of 524,288 holds, once in the probe's window.
Target: every p99 during < 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from ._report import RESULTS, header, write_section
from ._server import BLOCK_PAGES, HOST, NORMAL_START, Row, Server, table
from .bench_events import main_tree

COMMAND = ".venv/bin/python -m bench stall"
SECTION = "Loop stalls"
PERIOD_S = 0.01
TARGET_MS = 50.0
DMA32_PFN = 8192
BIG_ANSWER = 4 << 20
LONG_ERROR = 200
BATCH = 65536
MAIN_CODE = ", main's code"


# --- the probe (child process) ----------------------------------------------------------


def probe(url: str, pfn: int, seconds: float) -> None:
    """Print one JSON list: the latency in ms of every lookup, from when it was due."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as client:
        client.get(f"/v1/pages/{pfn}").raise_for_status()  # connected, warm
        start = time.perf_counter()
        due = start
        while due - start < seconds:
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)  # the schedule, not a wait for a result
            client.get(f"/v1/pages/{pfn}").raise_for_status()
            latencies.append((time.perf_counter() - due) * 1000)
            due += PERIOD_S
    print(json.dumps(latencies))


async def run_probe(server: Server, pfn: int, seconds: float) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bench_stall",
        "probe",
        server.url,
        str(pfn),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "BENCH_TOKEN": server.headers["Authorization"].split()[1]},
        cwd=str(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"probe failed ({proc.returncode})")
    latencies: list[float] = json.loads(out)
    return latencies


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --- the release handler ----------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server protocol)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path.endswith("/refuse"):
            self._answer(500, b"pinned by DMA")
        elif self.path.endswith("/long"):
            pages = json.loads(body)["pages"]
            failed = [{"pfn": p["pfn"], "error": "e" * LONG_ERROR} for p in pages]
            self._answer(200, json.dumps({"released": [], "failed": failed}).encode())
        elif self.path.endswith("/big"):
            pages = json.loads(body)["pages"]
            error = "x" * max(1, BIG_ANSWER // max(1, len(pages)) - 30)
            failed = [{"pfn": p["pfn"], "error": error} for p in pages]
            self._answer(200, json.dumps({"released": [], "failed": failed}).encode())
        else:
            self._answer(204, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("content-type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the registry refused an over-long answer on its content-length

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# --- the cases --------------------------------------------------------------------------


class Bench:
    def __init__(self, server: Server, hook: str, seconds: float) -> None:
        self.server = server
        self.hook = hook
        self.seconds = seconds
        self.admin = httpx.AsyncClient(
            base_url=server.url, headers=server.headers, timeout=120, trust_env=False
        )
        self.tokens: dict[str, str] = {}

    async def holder(self, name: str, path: str | None) -> None:
        url = None if path is None else f"{self.hook}/{path}"
        answer = await self.admin.post("/v1/holders", json={"name": name, "release_url": url})
        answer.raise_for_status()
        self.tokens[name] = answer.json()["token"]

    async def batch(self, holder: str, start: int, nr_pages: int, unset: bool = False) -> None:
        route = "batch-unset" if unset else "batch-set"
        body = {"holder": holder, "ranges": [{"start_pfn": start, "nr_pages": nr_pages}]}
        (await self.admin.post(f"/v1/holds/{route}", json=body)).raise_for_status()

    async def during(self, work: Any, pfns: list[int], once: bool = False) -> list[float]:
        """p99 of each probe while ``work()`` runs over and over (``once``: one time)."""
        stop = asyncio.Event()
        rounds = 0

        async def loop() -> None:
            nonlocal rounds
            while not stop.is_set() and not (once and rounds):
                await work()
                rounds += 1

        worker = asyncio.create_task(loop())
        await asyncio.sleep(0.2)  # the work has started
        try:
            results = await asyncio.gather(
                *(run_probe(self.server, pfn, self.seconds) for pfn in pfns)
            )
        finally:
            stop.set()
            await asyncio.wait_for(worker, 300)
        if rounds == 0:
            raise RuntimeError("the work never finished a round")
        return [p99(r) for r in results]


@contextlib.contextmanager
def server_of(data_dir: str, pythonpath: Path | None) -> Iterator[Server]:
    """A ``Server`` running this tree's code, or the code at ``pythonpath``."""
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = str(pythonpath)
    try:
        server = Server(data_dir).start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    try:
        yield server
    finally:
        server.stop()


def chosen(case: str, cases: frozenset[str] | None) -> bool:
    """Whether ``case`` ("(a') ...": its tag is the text in the first brackets) runs."""
    return cases is None or case[1 : case.index(")")] in cases


async def measure(
    seconds: float, cases: frozenset[str] | None = None, pythonpath: Path | None = None
) -> list[tuple[str, str, float, float]]:
    """(case, probed zone, idle p99, p99 during) for every row of the chosen ``cases``
    (None: all), on this tree's code or on the code at ``pythonpath``."""
    rows: list[tuple[str, str, float, float]] = []
    received = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=received.serve_forever, daemon=True).start()
    hook = f"http://{HOST}:{received.server_address[1]}"
    with tempfile.TemporaryDirectory() as data_dir, server_of(data_dir, pythonpath) as server:
        b = Bench(server, hook, seconds)
        try:
            await b.holder("bulk", "ok")
            await b.holder("refuser", "refuse")
            await b.holder("talker", "big")
            await b.holder("longtalker", "long")
            await b.holder("doomed", "ok")
            await b.holder("quiet", None)
            await b.holder("many", None)
            normal_probe = 120 * BLOCK_PAGES  # a Normal pfn (block 120) no case touches
            idle_other, idle_same = await b.during(_nothing, [DMA32_PFN, normal_probe])

            def row(case: str, other: float, same: float | None = None) -> None:
                rows.append((case, "other zone", idle_other, other))
                if same is not None:
                    rows.append((case, "same zone", idle_same, same))

            start = NORMAL_START

            async def batches() -> None:
                await b.batch("bulk", start, BATCH)
                await b.batch("bulk", start, BATCH, unset=True)

            case = "(a) 65,536-page batch-set + batch-unset (a range)"
            if chosen(case, cases):
                row(case, *await b.during(batches, [DMA32_PFN, normal_probe]))
            pages = [{"pfn": start + i, "order": 0} for i in range(BATCH)]
            set_body = json.dumps({"holder": "bulk", "pages": pages}).encode()
            unset_body = json.dumps({"pages": pages}).encode()

            async def page_batches() -> None:
                for route, body in (("batch-set", set_body), ("batch-unset", unset_body)):
                    answer = await b.admin.post(
                        f"/v1/holds/{route}",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    answer.raise_for_status()

            case = "(a') the same as a 65,536-entry pages list"
            if chosen(case, cases):
                row(case, *await b.during(page_batches, [DMA32_PFN, normal_probe]))

            # (b), (c), (c'): a block of 32,768 holds whose holder does not release them
            for case, holder, block in (
                (
                    "(b) offline of 32,768 holds, all refused (report of 32,768 failures)",
                    "refuser",
                    40,
                ),
                ("(c) offline of 32,768 holds, ~4 MiB answers (refused unread)", "talker", 41),
                (
                    "(c') offline of 32,768 holds, the longest answers read (~0.9 MiB a call)",
                    "longtalker",
                    42,
                ),
            ):
                if not chosen(case, cases):
                    continue
                await b.batch(holder, block * BLOCK_PAGES, BLOCK_PAGES)

                async def offline(block: int = block) -> None:
                    answer = await b.admin.post(f"/v1/blocks/{block}/offline", json={})
                    assert answer.status_code == 409, answer.text

                row(case, *await b.during(offline, [DMA32_PFN, normal_probe]))

            # (d): 524,288 holds in the registry, all of one holder
            first = 48 * BLOCK_PAGES
            for n in range(8 if cases is None or cases & {"d", "d'"} else 0):
                await b.batch("many", first + n * BATCH, BATCH)
            urls = iter([f"{hook}/ok", None] * 1_000_000)

            async def patch(name: str) -> None:
                answer = await b.admin.patch(
                    f"/v1/holders/{name}", json={"release_url": next(urls)}
                )
                answer.raise_for_status()

            async def patch_quiet() -> None:
                await patch("quiet")

            async def patch_many() -> None:
                await patch("many")

            case = "(d) PATCH of a holder without holds, 524,288 holds in the registry"
            if chosen(case, cases):
                row(case, *await b.during(patch_quiet, [DMA32_PFN]))
            case = "(d') PATCH of the holder of 524,288 holds (release_url set/unset)"
            if chosen(case, cases):
                row(case, *await b.during(patch_many, [DMA32_PFN, normal_probe]))

            # (g): a forced DELETE of another holder of 524,288 holds, once
            case = "(g) DELETE ?force=true of a holder of 524,288 holds (once in the window)"
            if chosen(case, cases):
                doomed = 64 * BLOCK_PAGES
                for n in range(8):
                    await b.batch("doomed", doomed + n * BATCH, BATCH)

                async def delete() -> None:
                    answer = await b.admin.delete("/v1/holders/doomed", params={"force": "true"})
                    assert answer.status_code == 204, answer.text

                row(case, *await b.during(delete, [DMA32_PFN, normal_probe], once=True))

            # (e) a holder's oversized batch
            over = [{"pfn": start + i, "order": 0} for i in range(70_000)]
            over_body = json.dumps({"pages": over}).encode()
            bulk = {
                "Authorization": f"Bearer {b.tokens['bulk']}",
                "content-type": "application/json",
            }

            async def oversized() -> None:
                answer = await b.admin.post("/v1/holds/batch-set", content=over_body, headers=bulk)
                assert answer.status_code == 413, answer.text

            case = "(e) a holder's batch of 70,000 pages (413)"
            if chosen(case, cases):
                row(case, *await b.during(oversized, [DMA32_PFN]))

            # (f) four anonymous 8 MiB bodies at a time
            anon_body = b'{"pages": [' + b" " * ((8 << 20) - 40) + b"]}"

            async def anonymous() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as anon:
                    answers = await asyncio.gather(
                        *(anon.post("/v1/holds/batch-set", content=anon_body) for _ in range(4))
                    )
                assert all(a.status_code == 401 for a in answers)

            case = "(f) four unauthenticated 8 MiB bodies"
            if chosen(case, cases):
                row(case, *await b.during(anonymous, [DMA32_PFN]))
        finally:
            await b.admin.aclose()
            received.shutdown()
    return rows


async def _nothing() -> None:
    await asyncio.sleep(0.05)


def rows_of(measured: list[tuple[str, str, float, float]], code: str = "") -> list[Row]:
    out = []
    for case, zone, idle, during in measured:
        passed = during < TARGET_MS
        short = "" if passed else f"{during - TARGET_MS:.0f} ms over"
        out.append(
            Row(
                f"{case}, lookups in the {zone}{code}",
                f"p99 {during:.1f} ms",
                f"idle p99 {idle:.1f} ms",
                f"{during / idle:.1f}x",
                f"< {TARGET_MS:g} ms",
                passed,
                short,
            )
        )
    return out


def load() -> str:
    """The 1-, 5- and 15-minute load averages (``uptime``'s)."""
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def replace_rows(rows: list[Row], note: str) -> None:
    """Put ``rows`` in place of the rows of the same measure in RESULTS.md's section (new
    ones at its table's end), and ``note`` (one line per rerun) after the table."""
    text = RESULTS.read_text()
    start = text.index(f"## {SECTION}\n")
    end = text.find("\n## ", start)
    end = len(text) if end < 0 else end + 1
    lines = text[start:end].splitlines()
    fresh = table(rows).splitlines()[2:]
    for new in fresh:
        measure = new.split(" | ")[0]
        at = [i for i, line in enumerate(lines) if line.split(" | ")[0] == measure]
        if at:
            lines[at[0]] = new
            continue
        # a row of main's code goes after this tree's row of the same case
        mine = measure.removesuffix(MAIN_CODE)
        near = [i for i, line in enumerate(lines) if line.split(" | ")[0] == mine]
        last = max(i for i, line in enumerate(lines) if line.startswith("| "))
        lines.insert((near[0] if near else last) + 1, new)
    last = max(i for i, line in enumerate(lines) if line.startswith("| "))
    tag = note.split(":")[0]
    lines = [line for line in lines if not line.startswith(tag)]
    lines[last + 1 : last + 1] = ["", note]
    section = "\n".join(lines).rstrip("\n").replace("\n\n\n", "\n\n") + "\n\n"
    RESULTS.write_text((text[:start] + section + text[end:]).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    quick = bool(os.environ.get("BENCH_QUICK"))
    seconds = 2.0 if quick else 5.0
    picked = ",".join(argv) if argv else os.environ.get("BENCH_STALL_CASES")
    cases = frozenset(picked.split(",")) if picked else None
    began = time.monotonic()
    before = load()
    rows = rows_of(asyncio.run(measure(seconds, cases)))
    against_main = bool(os.environ.get("BENCH_STALL_MAIN"))
    if against_main:
        with tempfile.TemporaryDirectory() as base:
            main_code = main_tree(Path(base) / "main")
            rows += rows_of(asyncio.run(measure(seconds, cases, main_code)), MAIN_CODE)
    text = header(SECTION, COMMAND, time.monotonic() - began) + (
        f"Lookups every {PERIOD_S * 1000:g} ms for {seconds:g} s per probe, latency counted"
        " from when each was due (see bench/bench_stall.py for the cases).\n\n" + table(rows) + "\n"
    )
    print(text)
    print(f"load average before / after: {before} ; {load()}")
    if quick:
        return
    if cases is None:
        write_section(SECTION, text)
        return
    stamp = text.split("Date: ")[1].split("\n")[0]
    env = f"BENCH_STALL_CASES={picked}" + (" BENCH_STALL_MAIN=1" if against_main else "")
    replace_rows(
        rows,
        f"Rows {', '.join(sorted(cases))} rerun: `{env} {COMMAND}`, {stamp}, load average"
        f" (1/5/15 min) {before} before and {load()} after.",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
