"""Loop stalls: lookup latency while big work runs (issue 11, finding 4).

Run: ``.venv/bin/python -m bench stall``. ``BENCH_QUICK=1`` makes a short run that
leaves RESULTS.md alone.

One real server (``bench._server``, a durable data directory in a temporary folder,
one uvicorn worker on 127.0.0.1) and, in this process, a plain HTTP release handler on
127.0.0.1 that answers as its path says (``/refuse``: 500; ``/big``: 200 with a
per-page failure list of about 4 MiB; ``/ok``: 204).

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
(c) the same offline with a holder answering ~4 MiB of per-page failures per call;
(d) PATCH of a holder without holds (release_url set and unset) with 524,288 holds in
    the registry; (d') the same PATCH of the holder of those 524,288 holds (every
    hold's "no handler" mark follows);
(e) a holder's batch of 70,000 pages (over the 65,536 limit; 413);
(f) four unauthenticated clients sending 8 MiB bodies (401);
(g) DELETE ?force=true of a holder of 524,288 holds, once in the probe's window.
Target: every p99 during < 50 ms.

``BENCH_CASES=d,d',g`` runs only those cases (and the idle baseline) and, like
``BENCH_QUICK``, leaves RESULTS.md alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from ._report import header, write_section
from ._server import BLOCK_PAGES, HOST, NORMAL_START, Row, Server, table

COMMAND = ".venv/bin/python -m bench stall"
SECTION = "Loop stalls"
PERIOD_S = 0.01
TARGET_MS = 50.0
DMA32_PFN = 8192
BIG_ANSWER = 4 << 20
BATCH = 65536


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
        self.wfile.write(body)

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


async def measure(
    seconds: float, cases: set[str] | None = None
) -> list[tuple[str, str, float, float]]:
    """(case, probed zone, idle p99, p99 during) for every row (of ``cases``: all)."""
    rows: list[tuple[str, str, float, float]] = []

    def chosen(case: str) -> bool:
        return cases is None or case in cases

    received = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=received.serve_forever, daemon=True).start()
    hook = f"http://{HOST}:{received.server_address[1]}"
    with tempfile.TemporaryDirectory() as data_dir, Server(data_dir) as server:
        b = Bench(server, hook, seconds)
        try:
            await b.holder("bulk", "ok")
            await b.holder("refuser", "refuse")
            await b.holder("talker", "big")
            await b.holder("quiet", None)
            await b.holder("many", None)
            await b.holder("doomed", "ok")
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

            if chosen("a"):
                row(
                    "(a) 65,536-page batch-set + batch-unset (a range)",
                    *await b.during(batches, [DMA32_PFN, normal_probe]),
                )
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

            if chosen("a'"):
                row(
                    "(a') the same as a 65,536-entry pages list",
                    *await b.during(page_batches, [DMA32_PFN, normal_probe]),
                )

            # (b), (c): a block of 32,768 holds whose holder does not release them
            for case, holder, block in (
                (
                    "(b) offline of 32,768 holds, all refused (report of 32,768 failures)",
                    "refuser",
                    40,
                ),
                ("(c) offline of 32,768 holds, ~4 MiB answers", "talker", 41),
            ):
                if not chosen(case[1]):
                    continue
                await b.batch(holder, block * BLOCK_PAGES, BLOCK_PAGES)

                async def offline(block: int = block) -> None:
                    answer = await b.admin.post(f"/v1/blocks/{block}/offline", json={})
                    assert answer.status_code == 409, answer.text

                row(case, *await b.during(offline, [DMA32_PFN, normal_probe]))

            # (d): 524,288 holds in the registry, all of one holder
            first = 48 * BLOCK_PAGES
            for n in range(8):
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

            if chosen("d"):
                row(
                    "(d) PATCH of a holder without holds, 524,288 holds in the registry",
                    *await b.during(patch_quiet, [DMA32_PFN]),
                )
            if chosen("d'"):
                row(
                    "(d') PATCH of the holder of 524,288 holds (release_url set/unset)",
                    *await b.during(patch_many, [DMA32_PFN, normal_probe]),
                )

            # (g): a forced DELETE of another holder of 524,288 holds, once
            if chosen("g"):
                doomed = 64 * BLOCK_PAGES
                for n in range(8):
                    await b.batch("doomed", doomed + n * BATCH, BATCH)

                async def delete() -> None:
                    answer = await b.admin.delete("/v1/holders/doomed", params={"force": "true"})
                    assert answer.status_code == 204, answer.text

                row(
                    "(g) DELETE ?force=true of a holder of 524,288 holds (once in the window)",
                    *await b.during(delete, [DMA32_PFN, normal_probe], once=True),
                )

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

            if chosen("e"):
                row(
                    "(e) a holder's batch of 70,000 pages (413)",
                    *await b.during(oversized, [DMA32_PFN]),
                )

            # (f) four anonymous 8 MiB bodies at a time
            anon_body = b'{"pages": [' + b" " * ((8 << 20) - 40) + b"]}"

            async def anonymous() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=60) as anon:
                    answers = await asyncio.gather(
                        *(anon.post("/v1/holds/batch-set", content=anon_body) for _ in range(4))
                    )
                assert all(a.status_code == 401 for a in answers)

            if chosen("f"):
                row(
                    "(f) four unauthenticated 8 MiB bodies",
                    *await b.during(anonymous, [DMA32_PFN]),
                )
        finally:
            await b.admin.aclose()
            received.shutdown()
    return rows


async def _nothing() -> None:
    await asyncio.sleep(0.05)


def rows_of(measured: list[tuple[str, str, float, float]]) -> list[Row]:
    out = []
    for case, zone, idle, during in measured:
        passed = during < TARGET_MS
        short = "" if passed else f"{during - TARGET_MS:.0f} ms over"
        out.append(
            Row(
                f"{case}, lookups in the {zone}",
                f"p99 {during:.1f} ms",
                f"idle p99 {idle:.1f} ms",
                f"{during / idle:.1f}x",
                f"< {TARGET_MS:g} ms",
                passed,
                short,
            )
        )
    return out


def main() -> None:
    quick = bool(os.environ.get("BENCH_QUICK"))
    only = os.environ.get("BENCH_CASES")
    cases = None if not only else {c.strip() for c in only.split(",")}
    seconds = 2.0 if quick else 5.0
    began = time.monotonic()
    rows = rows_of(asyncio.run(measure(seconds, cases)))
    text = header(SECTION, COMMAND, time.monotonic() - began) + (
        f"Lookups every {PERIOD_S * 1000:g} ms for {seconds:g} s per probe, latency counted"
        " from when each was due (see bench/bench_stall.py for the cases).\n\n" + table(rows) + "\n"
    )
    print(text)
    if not quick and cases is None:
        write_section(SECTION, text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
