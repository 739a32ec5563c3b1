"""``pageholder serve`` as it ships against its peer, etcd, on one machine.

Run: ``.venv/bin/python -m bench peer`` (installs wrk and Debian's ``etcd-server`` with
apt-get if they are missing). ``BENCH_SECONDS=2`` makes a quick run (one round) that
leaves ``bench/RESULTS.md`` alone.

What a user would run instead of pageholder for "who holds this page" is etcd. Both are
started the way their users start them:

* ``pageholder serve --port P --data-dir D`` -- the installed console script, its default
  logging (uvicorn's access log on, to stdout, here a file), a durable SQLite data dir in
  a temp dir; the admin token from ``PAGEHOLDER_ADMIN_TOKEN``. A second one, identical
  but for ``--log-level warning`` (no access log), measures what the access log costs.
* ``etcd`` from Debian (``etcd-server``): one member, data dir in a temp dir, client and
  peer URLs on 127.0.0.1, answering through its JSON gateway (``/v3/kv/...``).

Both are loaded with the same key set: 4096 held pfns (pageholder: holds of holder ``h``
made by one batch; etcd: keys ``pf/<9-digit pfn>`` = ``h``). Workloads, each a wrk Lua
script generated here, ``wrk -t1 -c32``:

* lookup: ``GET /v1/pages/{pfn}`` against ``POST /v3/kv/range`` (serializable), pfns
  drawn uniformly from 8192 pfns of which the first 4096 are present;
* durable create: ``PUT /v1/pages/{pfn}/hold {"holder": "h"}`` on fresh pfns against
  ``POST /v3/kv/txn`` "create if absent" (compare create_revision = 0, then put) on fresh
  keys; both acknowledge only what is on disk. The scripts count the answers that
  created (201; ``"succeeded":true``) and a run where any did not is refused;
* trivial: ``GET /healthz`` of the same ``serve`` process: a FastAPI route that does
  nothing (no auth, a constant answer): the floor of that app's routes;
* lookup (no access log): the lookup on the ``--log-level warning`` server.

The workloads alternate over ROUNDS rounds (each round starts with another one); rates
are medians over rounds, ratios medians of per-round ratios of the same round.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from ._report import header, write_section
from ._server import (
    HOST,
    LUA_THREAD_IDS,
    NORMAL_START,
    TOKEN,
    Row,
    WrkResult,
    fmt_rate,
    fmt_us,
    info_row,
    lua_headers,
    ratio_row,
    run_wrk,
    table,
)

COMMAND = ".venv/bin/python -m bench peer"
SECTION = "Against etcd: pageholder serve as shipped"
SECONDS = 8.0
WARMUP_SECONDS = 2.0
ROUNDS = 3
THREADS = 1
CONNECTIONS = 32
HELD = 4096  # present pfns [NORMAL_START, NORMAL_START + HELD)
LOOKUP_SPAN = 2 * HELD
CREATE_BASE = NORMAL_START + (1 << 16)
CREATE_SPAN = 1 << 19  # fresh pfns per create run; the Normal zone has room for 5 runs
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
ETCD_PUTS_PER_TXN = 128  # etcd's default --max-txn-ops

WORKLOADS = ("lookup", "range", "create", "txn", "trivial", "lookup_nolog")
# The rotation's units: the access-log pair runs back to back (its order alternating), so
# that the load of other jobs on the machine changes as little as possible between them.
GROUPS = (("lookup", "lookup_nolog"), ("range",), ("create", "txn"), ("trivial",))
ACCESS_LOG_REQUESTS = 1000  # per chunk; chunks alternate with and without the log
ACCESS_LOG_REPEATS = 31


# --- tools ---------------------------------------------------------------------------------


def ensure_tools() -> None:
    """wrk and etcd, from Debian, if either is missing."""
    if shutil.which("wrk") and shutil.which("etcd"):
        return
    print("installing wrk and etcd-server with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk", "etcd-server"], check=True, env=env, timeout=900
    )


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def pageholder_script() -> str:
    script = Path(sys.executable).parent / "pageholder"
    if not script.exists():
        raise SystemExit(f"no installed pageholder command next to {sys.executable}")
    return str(script)


# --- processes -----------------------------------------------------------------------------


@dataclass
class Process:
    """A child process whose output goes to a file; a context manager that stops it."""

    name: str
    args: list[str]
    ready_url: str
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    out: IO[bytes] | None = None

    def __enter__(self) -> Process:
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.args, stdout=self.out, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(self.ready_url, timeout=2, trust_env=False).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.output()
                self.__exit__()
                raise RuntimeError(f"{self.name} did not start:\n{log}")
            time.sleep(0.05)

    def output(self) -> str:
        if self.out is None:
            return ""
        self.out.seek(0)
        return self.out.read().decode(errors="replace")[-4000:]

    def __exit__(self, *exc_info: object) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self.proc = None
        if self.out is not None:
            self.out.close()
            self.out = None


def serve(data_dir: str, *, access_log: bool) -> tuple[Process, str]:
    port = free_port()
    args = [pageholder_script(), "serve", "--port", str(port), "--data-dir", data_dir]
    if not access_log:
        args += ["--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEHOLDER_")}
    env["PAGEHOLDER_ADMIN_TOKEN"] = TOKEN
    url = f"http://{HOST}:{port}"
    return Process("pageholder serve", args, f"{url}/readyz", env=env), url


def etcd(data_dir: str) -> tuple[Process, str]:
    client, peer = f"http://{HOST}:{free_port()}", f"http://{HOST}:{free_port()}"
    args = ["etcd", "--name", "bench", "--data-dir", data_dir]
    args += ["--listen-client-urls", client, "--advertise-client-urls", client]
    args += ["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer]
    args += ["--initial-cluster", f"bench={peer}", "--logger", "zap", "--log-level", "warn"]
    return Process("etcd", args, f"{client}/health"), client


# --- keys and scripts ------------------------------------------------------------------------


def etcd_key(pfn: int) -> str:
    """``pf/<9 digits>``, base64 (12 bytes: three 3-digit groups after a 3-byte prefix, so
    the Lua scripts build it from a table of 1000 groups, no base64 at request time)."""
    return base64.b64encode(f"pf/{pfn:09d}".encode()).decode()


B64_H = base64.b64encode(b"h").decode()
LUA_B64 = (
    f'local prefix = "{base64.b64encode(b"pf/").decode()}"\n'
    "local groups = {"
    + ",".join(f'"{base64.b64encode(f"{i:03d}".encode()).decode()}"' for i in range(1000))
    + "}\n"
    + """
local key = function(pfn)
  return prefix .. groups[math.floor(pfn / 1000000) + 1]
    .. groups[math.floor(pfn / 1000) % 1000 + 1] .. groups[pfn % 1000 + 1]
end
"""
)

PH_LOOKUP = (
    LUA_THREAD_IDS
    + f"""
local h = {lua_headers()}
init = function(args) math.randomseed(1000 + id) end
request = function()
  return wrk.format("GET", "/v1/pages/" .. ({NORMAL_START} + math.random(0, {LOOKUP_SPAN - 1})), h)
end
"""
)

ETCD_RANGE = (
    LUA_THREAD_IDS
    + LUA_B64
    + f"""
local h = {{["Content-Type"] = "application/json"}}
init = function(args) math.randomseed(1000 + id) end
request = function()
  local k = key({NORMAL_START} + math.random(0, {LOOKUP_SPAN - 1}))
  return wrk.format("POST", "/v3/kv/range", h, '{{"key":"' .. k .. '","serializable":true}}')
end
"""
)

TRIVIAL = f"""
local h = {lua_headers()}
request = function() return wrk.format("GET", "/healthz", h) end
"""


def ph_create(run: int) -> str:
    base = CREATE_BASE + run * CREATE_SPAN
    return (
        LUA_THREAD_IDS
        + f"""
local h = {lua_headers("Content-Type", "application/json")}
local body = '{{"holder": "h"}}'
local k = 0
puts = 0
request = function()
  local pfn = {base} + k
  k = (k + 1) % {CREATE_SPAN}
  return wrk.format("PUT", "/v1/pages/" .. pfn .. "/hold", h, body)
end
response = function(status, headers, body)
  if status == 201 then puts = puts + 1 end
end
"""
    )


def etcd_txn(run: int) -> str:
    base = CREATE_BASE + run * CREATE_SPAN
    return (
        LUA_THREAD_IDS
        + LUA_B64
        + f"""
local h = {{["Content-Type"] = "application/json"}}
local k = 0
puts = 0
request = function()
  local key = key({base} + k)
  k = (k + 1) % {CREATE_SPAN}
  return wrk.format("POST", "/v3/kv/txn", h,
    '{{"compare":[{{"result":"EQUAL","target":"CREATE","key":"' .. key
    .. '","create_revision":"0"}}],"success":[{{"request_put":{{"key":"' .. key
    .. '","value":"{B64_H}"}}}}]}}')
end
response = function(status, headers, body)
  if status == 200 and string.find(body, '"succeeded":true', 1, true) then puts = puts + 1 end
end
"""
    )


# --- loading and checking ---------------------------------------------------------------------


def load_pageholder(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=auth, trust_env=False, timeout=30) as client:
        client.post("/v1/holders", json={"name": "h"}).raise_for_status()
        answer = client.post(
            "/v1/holds/batch-set",
            json={"holder": "h", "ranges": [{"start_pfn": NORMAL_START, "nr_pages": HELD}]},
        )
        answer.raise_for_status()
        assert all(r["status"] == "created" for r in answer.json()["results"])
        assert client.get(f"/v1/pages/{NORMAL_START + HELD - 1}").json()["held"]
        assert not client.get(f"/v1/pages/{NORMAL_START + HELD}").json()["held"]


def load_etcd(url: str) -> None:
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        for first in range(NORMAL_START, NORMAL_START + HELD, ETCD_PUTS_PER_TXN):
            puts = [
                {"request_put": {"key": etcd_key(pfn), "value": B64_H}}
                for pfn in range(first, min(first + ETCD_PUTS_PER_TXN, NORMAL_START + HELD))
            ]
            client.post("/v3/kv/txn", json={"success": puts}).raise_for_status()
        for pfn, present in ((NORMAL_START + HELD - 1, True), (NORMAL_START + HELD, False)):
            doc = client.post("/v3/kv/range", json={"key": etcd_key(pfn)}).json()
            assert bool(doc.get("kvs")) is present, doc


def pageholder_holds(url: str) -> int:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(f"{url}/v1/holders/h", headers=auth, trust_env=False, timeout=30)
    holds: int = answer.raise_for_status().json()["holds"]
    return holds


def etcd_keys(url: str) -> int:
    prefix = base64.b64encode(b"pf/").decode()
    end = base64.b64encode(b"pf0").decode()  # '/' + 1
    doc = httpx.post(
        f"{url}/v3/kv/range",
        json={"key": prefix, "range_end": end, "count_only": True},
        trust_env=False,
        timeout=30,
    ).json()
    return int(doc.get("count", 0))


# --- measuring -------------------------------------------------------------------------------


def measure(seconds: float, rounds: int) -> tuple[dict[str, list[WrkResult]], str]:
    runs: dict[str, list[WrkResult]] = {name: [] for name in WORKLOADS}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        ph, ph_url = serve(f"{tmp}/pageholder", access_log=True)
        quiet, quiet_url = serve(f"{tmp}/pageholder-quiet", access_log=False)
        et, et_url = etcd(f"{tmp}/etcd")
        with ph, quiet, et:
            load_pageholder(ph_url)
            load_pageholder(quiet_url)
            load_etcd(et_url)
            fresh = {"create": 0, "txn": 0}  # runs so far: each run takes fresh keys
            created = {"create": 0, "txn": 0}

            def one(name: str, secs: float) -> WrkResult:
                scripts: dict[str, Callable[[], tuple[str, str]]] = {
                    "lookup": lambda: (ph_url, PH_LOOKUP),
                    "range": lambda: (et_url, ETCD_RANGE),
                    "create": lambda: (ph_url, ph_create(fresh["create"])),
                    "txn": lambda: (et_url, etcd_txn(fresh["txn"])),
                    "trivial": lambda: (ph_url, TRIVIAL),
                    "lookup_nolog": lambda: (quiet_url, PH_LOOKUP),
                }
                url, script = scripts[name]()
                result = run_wrk(
                    url, script, seconds=secs, threads=THREADS, connections=CONNECTIONS
                ).check(name)
                if name in created:
                    if result.puts != result.requests:
                        raise RuntimeError(f"{name}: {result.puts} of {result.requests} created")
                    created[name] += result.puts
                    fresh[name] += 1
                return result

            for name in WORKLOADS:  # warm-up, not recorded
                one(name, WARMUP_SECONDS)
            for r in range(rounds):
                groups = GROUPS[r % len(GROUPS) :] + GROUPS[: r % len(GROUPS)]
                order = [n for g in groups for n in (g if r % 2 == 0 else g[::-1])]
                for name in order:
                    result = one(name, seconds)
                    runs[name].append(result)
                    print(
                        f"  round {r + 1} {name:12} {result.rps:7,.0f} req/s"
                        f"  p50 {fmt_us(result.p50_us)}  p99 {fmt_us(result.p99_us)}",
                        flush=True,
                    )
            # Every acknowledged create is there; beyond them at most the requests in
            # flight when wrk stopped (one per connection and run).
            for name, have in (("create", pageholder_holds(ph_url)), ("txn", etcd_keys(et_url))):
                extra = have - HELD - created[name]
                assert 0 <= extra <= CONNECTIONS * fresh[name], (name, have, created, fresh)
        version = subprocess.run(
            ["etcd", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
    version = version.replace("Version: ", "")  # "etcd 3.4.23"
    return runs, version


def access_log_cost() -> tuple[float, float]:
    """µs per lookup through the app in-process (ASGI calls, no sockets), without and with
    ``AccessLog`` writing to a file: chunks of ACCESS_LOG_REQUESTS alternating, medians
    over ACCESS_LOG_REPEATS pairs (short chunks side by side: other jobs' load changes
    little within a pair)."""
    import asyncio

    from pageholder.service.api.access_log import AccessLog
    from pageholder.service.api.app import create_app
    from pageholder.service.settings import Settings

    async def run() -> tuple[float, float]:
        app = create_app(Settings(data_dir=":memory:", admin_token=TOKEN))
        auth = (b"authorization", f"Bearer {TOKEN}".encode())
        with tempfile.TemporaryFile("w") as out:
            logged = AccessLog(app, out, colors=False)
            async with app.router.lifespan_context(app):

                async def receive() -> dict[str, object]:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: object) -> None:
                    pass

                async def chunk(asgi: object) -> float:
                    began = time.perf_counter()
                    for i in range(ACCESS_LOG_REQUESTS):
                        path = f"/v1/pages/{NORMAL_START + i % LOOKUP_SPAN}"
                        scope = {
                            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                            "method": "GET", "scheme": "http", "path": path,
                            "raw_path": path.encode(), "query_string": b"", "root_path": "",
                            "headers": [(b"host", b"x"), auth], "client": (HOST, 1),
                            "server": (HOST, 2), "state": {},
                        }  # fmt: skip
                        await asgi(scope, receive, send)  # type: ignore[operator]
                    return (time.perf_counter() - began) / ACCESS_LOG_REQUESTS * 1e6

                plain: list[float] = []
                with_log: list[float] = []
                for r in range(ACCESS_LOG_REPEATS):
                    pair = (app, logged) if r % 2 == 0 else (logged, app)
                    for asgi in pair:
                        (plain if asgi is app else with_log).append(await chunk(asgi))
                logged.flush()
        return statistics.median(plain), statistics.median(with_log)

    return asyncio.run(run())


def uvicorn_access_log_cost(lines: int = 20000) -> float:
    """µs per line of uvicorn's own access log: its logger call, ``AccessFormatter`` and
    default format, a ``StreamHandler`` to a file (what ``serve`` used before AccessLog)."""
    import logging

    from uvicorn.logging import AccessFormatter

    log = logging.getLogger("bench.uvicorn.access")
    log.propagate = False
    log.setLevel(logging.INFO)
    with tempfile.TemporaryFile("w") as out:
        handler = logging.StreamHandler(out)
        handler.setFormatter(
            AccessFormatter(
                '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                use_colors=False,
            )
        )
        log.addHandler(handler)
        try:
            best = float("inf")
            for _ in range(5):
                began = time.perf_counter()
                for i in range(lines):
                    path = f"/v1/pages/{NORMAL_START + i % LOOKUP_SPAN}"
                    log.info('%s - "%s %s HTTP/%s" %d', f"{HOST}:5555", "GET", path, "1.1", 200)
                best = min(best, (time.perf_counter() - began) / lines * 1e6)
        finally:
            log.removeHandler(handler)
    return best


def rows_of(
    runs: dict[str, list[WrkResult]], cost: tuple[float, float], uvicorn_us: float
) -> list[Row]:
    def rate(name: str) -> float:
        return statistics.median(r.rps for r in runs[name])

    def ratio(name: str, base: str) -> float:
        pairs = zip(runs[name], runs[base], strict=True)
        return statistics.median(a.rps / b.rps for a, b in pairs)

    def latency(name: str) -> str:
        p50 = statistics.median(r.p50_us for r in runs[name])
        p99 = statistics.median(r.p99_us for r in runs[name])
        return f"p50 {fmt_us(p50)}, p99 {fmt_us(p99)}"

    return [
        ratio_row(
            "lookup `GET /v1/pages/{pfn}` vs etcd `POST /v3/kv/range` (serializable)",
            fmt_rate(rate("lookup")),
            f"{fmt_rate(rate('range'))} (etcd)",
            ratio("lookup", "range"),
            1.0,
        ),
        info_row("lookup latency / etcd range latency", latency("lookup"), latency("range")),
        ratio_row(
            "durable create `PUT /v1/pages/{pfn}/hold` vs etcd `POST /v3/kv/txn` create-if-absent",
            fmt_rate(rate("create")),
            f"{fmt_rate(rate('txn'))} (etcd)",
            ratio("create", "txn"),
            1.0,
        ),
        info_row("create latency / etcd txn latency", latency("create"), latency("txn")),
        ratio_row(
            "lookup vs trivial FastAPI route `GET /healthz` (same process)",
            fmt_rate(rate("lookup")),
            f"{fmt_rate(rate('trivial'))} (trivial)",
            ratio("lookup", "trivial"),
            0.9,
        ),
        ratio_row(
            "lookup with the access log (as shipped) vs without (`--log-level warning`)",
            fmt_rate(rate("lookup")),
            f"{fmt_rate(rate('lookup_nolog'))} (no access log)",
            ratio("lookup", "lookup_nolog"),
            0.9,
        ),
        ratio_row(
            "access log cost per request, in-process A/B (µs per lookup through the app with"
            " `AccessLog` minus without), as a share of a served lookup (1 / no-log rate)",
            f"+{cost[1] - cost[0]:.1f} µs ({cost[0]:.1f} -> {cost[1]:.1f} µs)",
            f"{1e6 / rate('lookup_nolog'):.0f} µs",
            (cost[1] - cost[0]) / (1e6 / rate("lookup_nolog")),
            0.1,
            higher=False,
        ),
        info_row(
            "for comparison: one line of uvicorn's own access log (logger, formatter, handler"
            " to a file), as a share of a served lookup",
            f"{uvicorn_us:.1f} µs",
            f"{1e6 / rate('lookup_nolog'):.0f} µs",
            f"{uvicorn_us / (1e6 / rate('lookup_nolog')):.2f}",
        ),
    ]


def per_round(runs: dict[str, list[WrkResult]]) -> str:
    lines = ["| workload | " + " | ".join(f"round {i + 1}" for i in range(len(runs["lookup"])))]
    lines[0] += " |"
    lines.append("| --- |" + " ---: |" * len(runs["lookup"]))
    for name in WORKLOADS:
        lines.append(f"| {name} | " + " | ".join(fmt_rate(r.rps) for r in runs[name]) + " |")
    return "\n".join(lines)


# What moved these numbers and what is left; measured once (2026-12-01, same machine),
# not by every run, so it is printed as it stands.
NOTES = """\
What changed, and what is left:

- **Before** (commit b84d43a, this command, load average 2.6 -> 4.7): lookup 4,244 req/s vs
  etcd 2,658 (1.54x), durable create 1,757 vs 1,336 (1.13x), lookup vs `/healthz` 0.83x,
  access log 0.95x. etcd loses more than pageholder when other jobs take the cores: in a
  quicker, quieter run of the same code lookup was 0.67x etcd (3,657 vs 5,431), and the
  issue measured ~0.43x and ~0.45x.
- **FastPages** (`service/api/fast.py`) answers well-formed lookups, holds, unsets and
  releases ahead of FastAPI's dependency solving: FastAPI's own route objects, path regexes
  and pydantic validators, the same endpoint functions and exception handlers; anything
  else goes on to FastAPI untouched (`tests/api/test_fast.py` compares both apps over 74
  good and bad requests). In-process a lookup went from ~157 to ~18 µs (ASGI calls, one
  quiet moment), and served lookups from ~4,200 to ~12,500 req/s.
- **AccessLog** (`service/api/access_log.py`): uvicorn's own access log costs ~14-23 µs a
  line (a `LogRecord`, two `copy()`s of it in `AccessFormatter`, a write and flush each);
  `serve` now runs uvicorn with `access_log=False` and writes the same lines (built by
  uvicorn's helpers) for a few µs, in one write every 50 ms.
- **Left** (py-spy, 250 Hz, 8 s of this lookup load on `serve` as shipped): about half of
  the server's samples are uvicorn's two `transport.write` calls per response (headers,
  then body: two `send` syscalls), our code (fast path, middlewares, endpoint, lock, tree)
  ~20% inclusive of its sends, FastAPI's outer middlewares (telemetry, body limit) a few %.
  Coalescing uvicorn's two writes is the next step; it is uvicorn's, not done here.
"""


def section(
    rows: list[Row], seconds: float, run_seconds: float, rounds: int, version: str, load: str
) -> str:
    return (
        header(SECTION, COMMAND, seconds, extra=f"; wrk {THREADS} thread, {CONNECTIONS} conns")
        + f"`pageholder serve` (installed console script, default logging: the access"
        " log to stdout, redirected to a file; durable SQLite data dir in a temp dir; admin"
        f" token from the environment) against {version} from Debian (`etcd-server`, one"
        " member, temp data dir, loopback, its JSON gateway; no auth, as etcd ships)."
        f" Both loaded with the same {HELD} keys; lookups draw from {LOOKUP_SPAN} (half"
        " present); creates take fresh pfns/keys and every one of them must create (201;"
        ' `"succeeded":true`), and afterwards both stores hold exactly the keys they'
        f" acknowledged. wrk -t{THREADS} -c{CONNECTIONS}, {run_seconds:g} s per run, the six"
        f" workloads rotating over {rounds} rounds (lookup with and without the access log"
        " back to back, and pageholder's and etcd's creates, their order alternating);"
        " ratios are medians of per-round ratios. Every process shares the machine's"
        f" 2 cores with wrk and with other engineers' jobs: load average {load}.\n\n"
        f"{table(rows)}\n\n{NOTES}"
    )


def main() -> None:
    ensure_tools()
    quick = os.environ.get("BENCH_SECONDS")
    seconds = float(quick) if quick else SECONDS
    rounds = 1 if quick else ROUNDS
    began = time.perf_counter()
    before = os.getloadavg()
    runs, version = measure(seconds, rounds)
    cost = access_log_cost()
    uvicorn_us = uvicorn_access_log_cost()
    after = os.getloadavg()
    load = f"{before[0]:.2f} before, {after[0]:.2f} after (1-min)"
    text = section(
        rows_of(runs, cost, uvicorn_us), time.perf_counter() - began, seconds, rounds, version, load
    )
    text += f"\nRates per round:\n\n{per_round(runs)}\n"
    print(text)
    print(json.dumps({k: [round(r.rps) for r in v] for k, v in runs.items()}))
    if not quick:
        write_section(SECTION, text)
        print(f"updated section {SECTION!r} of bench/RESULTS.md")


if __name__ == "__main__":
    main()
