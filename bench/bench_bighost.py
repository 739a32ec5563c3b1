"""A fully held big host (issue 19): memory after a restart, restart time, bulk speed.

Run: ``.venv/bin/python -m bench bighost``. ``BENCH_QUICK=1`` makes a short run (8
batch-sets, 1,024 order-9 holds, no baseline) that leaves RESULTS.md alone.
``BENCH_BASELINE`` names the commit measured as "today" (default ``ede5906``, main
before this work); ``BENCH_BASELINE=none`` skips it. ``BENCH_DATA_DIR`` chooses where
the data dirs go.

One procedure, run against a real ``pageholder serve`` process (durable data dir, a
layout with a 32 GiB Normal zone, ``--log-level warning``) of this checkout, then of the
baseline commit (``git archive`` + ``pip install --no-deps --target``, served with that
directory first on ``PYTHONPATH``):

1. start on an empty data dir; once ``/readyz`` answers, the empty process's RSS;
2. holder ``h`` (with a release URL) and ``g`` (without); 64 sequential
   ``POST /v1/holds/batch-set`` of one 65,536-page range each for ``h``: 4,194,304
   order-0 holds (every answer checked: 65,536 ``created``); durable batch-set rate =
   holds / the 64 requests' wall time; then 8,192 order-9 holds for ``g`` (``pages``,
   one request); RSS built live;
3. SIGTERM (graceful), then a bare ``SELECT pfn, page_order, holder, since_us FROM
   holds`` of every row with Python's ``sqlite3`` in this process (rows iterated and
   dropped): the floor of any restart that reads the rows;
4. start again on the same data dir: seconds from ``Popen`` to the first ``/healthz``
   200 and to the first ``/readyz`` 200 (polled every 20 ms); RSS at ready and 5 s later.

Ratios (this checkout): RSS after restart / RSS built live <= 1.2; (RSS after restart -
empty RSS) / held pages <= 48 bytes; restart-to-ready / bare SELECT <= 2; batch-set
holds/s / the baseline's >= 2.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ._report import header, write_section
from ._server import Row, fmt_rate, fmt_s, info_row, ratio_row, table

COMMAND = ".venv/bin/python -m bench bighost"
SECTION = "A fully held big host"
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN = "bench-admin-token-0123456789abcdef"
NORMAL = 1 << 20
BATCH = 65_536
BATCHES = 64
ORDER9 = 8_192
LAYOUT = f"""\
block_size = 134217728
[[zone]]
node = 0
name = "DMA32"
start_pfn = 4096
spanned_pages = {NORMAL - 4096}
[[zone]]
node = 0
name = "Normal"
start_pfn = {NORMAL}
spanned_pages = {1 << 23}
"""
READY_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 120.0
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Run:
    """What one procedure measured for one build."""

    label: str
    empty_rss: int = 0
    live_rss: int = 0
    restart_rss: int = 0
    restart_rss_later: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    order9_seconds: float = 0.0
    held_pages: int = 0
    select_s: float = 0.0
    select_rows: int = 0
    healthz_s: float = 0.0
    ready_s: float = 0.0
    db_bytes: int = 0

    @property
    def rate(self) -> float:
        return len(self.batch_seconds) * BATCH / sum(self.batch_seconds)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Serve:
    """``pageholder serve`` of one build in a child process."""

    def __init__(self, data_dir: Path, layout: Path, site: Path | None, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEHOLDER_")}
        env["PAGEHOLDER_ADMIN_TOKEN"] = TOKEN
        if site is not None:
            env["PYTHONPATH"] = str(site)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        code = "from pageholder.cli.main import main; main()"
        args = [sys.executable, "-c", code, "serve", "--host", HOST, "--port", str(self.port)]
        args += ["--data-dir", str(data_dir), "--layout", str(layout), "--log-level", "warning"]
        self.began = time.perf_counter()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.log = log

    def wait(self, path: str) -> float:
        """Seconds from start until ``path`` answers 200 (polled every 20 ms)."""
        deadline = self.began + READY_TIMEOUT_S
        with httpx.Client(base_url=self.url, trust_env=False, timeout=2) as http:
            while True:
                try:
                    if http.get(path).status_code == 200:
                        return time.perf_counter() - self.began
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None or time.perf_counter() > deadline:
                    self.stop()
                    raise RuntimeError(f"no {path}: {self.log.read_text()[-3000:]}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)


def fill(server: Serve, run: Run, batches: int, order9: int) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS, trust_env=False, timeout=300) as c:
        c.post("/v1/holders", json={"name": "h", "release_url": "http://127.0.0.1:9/h"})
        c.post("/v1/holders", json={"name": "g"}).raise_for_status()
        for i in range(batches):
            body = {"holder": "h", "ranges": [{"start_pfn": NORMAL + i * BATCH, "nr_pages": BATCH}]}
            began = time.perf_counter()
            answer = c.post("/v1/holds/batch-set", json=body)
            run.batch_seconds.append(time.perf_counter() - began)
            created = answer.content.count(b'"status":"created"')
            if answer.status_code != 200 or created != BATCH:
                raise RuntimeError(f"batch {i}: {answer.status_code}, {created} created")
        base = NORMAL + batches * BATCH
        pages = [{"pfn": base + 512 * i, "order": 9} for i in range(order9)]
        began = time.perf_counter()
        answer = c.post("/v1/holds/batch-set", json={"holder": "g", "pages": pages})
        run.order9_seconds = time.perf_counter() - began
        if answer.content.count(b'"status":"created"') != order9:
            raise RuntimeError(f"order-9 batch: {answer.status_code} {answer.text[:300]}")
        run.held_pages = sum(
            h["held_pages"] for h in c.get("/v1/holders").raise_for_status().json()["items"]
        )


def bare_select(db_path: Path) -> tuple[float, int]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        began = time.perf_counter()
        rows = 0
        for _ in db.execute("SELECT pfn, page_order, holder, since_us FROM holds"):
            rows += 1
        return time.perf_counter() - began, rows
    finally:
        db.close()


def procedure(label: str, site: Path | None, root: Path, batches: int, order9: int) -> Run:
    run = Run(label)
    data_dir = root / f"data-{label}"
    layout = root / "layout.toml"
    layout.write_text(LAYOUT)
    log = root / f"serve-{label}.log"
    print(f"[{label}] empty start", flush=True)
    server = Serve(data_dir, layout, site, log)
    try:
        server.wait("/readyz")
        time.sleep(1)  # whatever the start allocated lazily
        run.empty_rss = rss(server.proc.pid)
        fill(server, run, batches, order9)
        run.live_rss = rss(server.proc.pid)
    finally:
        server.stop()
    print(f"[{label}] {run.rate:,.0f} holds/s; live RSS {run.live_rss / 2**20:.0f} MiB", flush=True)
    run.db_bytes = sum(p.stat().st_size for p in data_dir.iterdir() if p.is_file())
    run.select_s, run.select_rows = bare_select(data_dir / "pageholder.db")
    print(f"[{label}] bare SELECT of {run.select_rows:,} rows: {run.select_s:.2f} s", flush=True)
    server = Serve(data_dir, layout, site, log)
    try:
        run.healthz_s = server.wait("/healthz")
        run.ready_s = server.wait("/readyz")
        run.restart_rss = rss(server.proc.pid)
        time.sleep(5)
        run.restart_rss_later = rss(server.proc.pid)
    finally:
        server.stop()
    print(
        f"[{label}] restart: /healthz {run.healthz_s:.2f} s, /readyz {run.ready_s:.2f} s,"
        f" RSS {run.restart_rss / 2**20:.0f} MiB",
        flush=True,
    )
    return run


def baseline_site(commit: str, root: Path) -> Path:
    """``commit`` of this repository installed (no dependencies) into a directory."""
    src, site = root / "baseline-src", root / "baseline-site"
    src.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
    )
    return site


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def rows_of(now: Run, base: Run | None) -> list[Row]:
    per_page = (now.restart_rss - now.empty_rss) / now.held_pages
    rows = [
        ratio_row(
            "RSS after the restart / RSS built live",
            mib(now.restart_rss),
            f"{mib(now.live_rss)} (built live)",
            now.restart_rss / now.live_rss,
            1.2,
            higher=False,
        ),
        Row(
            f"all-in bytes per held page after the restart ({now.held_pages:,} pages)",
            f"{per_page:.1f} B",
            f"{mib(now.empty_rss)} (empty process)",
            "—",
            "≤ 48 B",
            per_page <= 48,
            "" if per_page <= 48 else f"{per_page / 48:.2f}x over the target",
        ),
        ratio_row(
            "restart until `/readyz` / bare `SELECT` of every hold row",
            fmt_s(now.ready_s),
            f"{fmt_s(now.select_s)} ({now.select_rows:,} rows)",
            now.ready_s / now.select_s,
            2,
            higher=False,
        ),
    ]
    if base is not None:
        rows.append(
            ratio_row(
                "durable batch-set of 65,536 pages, holds/s",
                fmt_rate(now.rate, "holds/s"),
                f"{fmt_rate(base.rate, 'holds/s')} ({base.label})",
                now.rate / base.rate,
                2,
            )
        )
    else:
        rows.append(info_row("durable batch-set of 65,536 pages", fmt_rate(now.rate, "holds/s")))
    for run in (now, base):
        if run is None:
            continue
        rows += [
            info_row(f"[{run.label}] restart until `/healthz`", fmt_s(run.healthz_s)),
            info_row(f"[{run.label}] restart until `/readyz`", fmt_s(run.ready_s)),
            info_row(
                f"[{run.label}] RSS: empty / built live / after restart / 5 s later",
                f"{mib(run.empty_rss)} / {mib(run.live_rss)} / {mib(run.restart_rss)}"
                f" / {mib(run.restart_rss_later)}",
            ),
            info_row(
                f"[{run.label}] all-in bytes per held page, live / after restart",
                f"{(run.live_rss - run.empty_rss) / run.held_pages:.1f} B"
                f" / {(run.restart_rss - run.empty_rss) / run.held_pages:.1f} B",
            ),
            info_row(
                f"[{run.label}] batch-set seconds per 65,536 pages: min / median / max",
                " / ".join(
                    f"{s:.3f}"
                    for s in (
                        min(run.batch_seconds),
                        sorted(run.batch_seconds)[len(run.batch_seconds) // 2],
                        max(run.batch_seconds),
                    )
                ),
            ),
            info_row(f"[{run.label}] 8,192 order-9 holds, one batch", fmt_s(run.order9_seconds)),
            info_row(f"[{run.label}] database with its WAL", mib(run.db_bytes)),
        ]
    return rows


def main() -> None:
    quick = bool(os.environ.get("BENCH_QUICK"))
    commit = os.environ.get("BENCH_BASELINE", "ede5906")
    batches, order9 = (8, 1024) if quick else (BATCHES, ORDER9)
    began = time.perf_counter()
    root = Path(
        tempfile.mkdtemp(prefix="pageholder-bighost-", dir=os.environ.get("BENCH_DATA_DIR"))
    )
    try:
        now = procedure("this checkout", None, root, batches, order9)
        base = None
        if not quick and commit != "none":
            site = baseline_site(commit, root)
            base = procedure(commit, site, root, batches, order9)
        rows = rows_of(now, base)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = (
        header(SECTION, COMMAND, time.perf_counter() - began)
        + "A real `pageholder serve` (durable data dir, one uvicorn worker) of this checkout"
        + (f' and of `{commit}` ("today")' if base is not None else "")
        + f": {batches} sequential batch-sets of one 65,536-page range ({batches * BATCH:,}"
        f" order-0 holds), then {order9:,} order-9 holds in one batch; SIGTERM; a bare"
        " `SELECT` of every hold row with Python's `sqlite3`; a restart on the same data"
        " dir, timed from `Popen` to the first 200 of `/healthz` and of `/readyz`. RSS is"
        " `VmRSS`. See the module docstring of `bench/bench_bighost.py`.\n\n"
        f"{table(rows)}\n\n"
        "Bytes per held page count every page of the order-9 holds too (an order-9 hold is"
        " 8 slots of a shift-6 node, next to nothing per page); per order-0 hold it is about"
        " twice the figure: a full leaf is the node, its 64-slot list and its 64-stamp"
        " array, ~1.3 KB per 64 holds. The SQLite side of a batch-set is one recursive-CTE"
        " `INSERT` per range; the tree side one `RadixTree.fill`; the rest of a batch's"
        " time is the fsync of its commit and the 2.6 MB JSON answer.\n"
    )
    print(text)
    if not quick:
        write_section(SECTION, text)
        print(f"updated section {SECTION!r} of bench/RESULTS.md")


if __name__ == "__main__":
    main()
