"""What the HTTP benchmarks share: a registry server in its own process, wrk, results.

The server (``Server``) is this module run as a script::

    python -m bench._server --data-dir DIR|:memory: --token T [--stats] [--profile FILE]

(``BENCH_LAG=FILE`` in its environment: where its event loop stalled, ``bench/_lag.py``,
``{pid}`` in FILE replaced by its process id;
``BENCH_NO_GC=1``: the collector off, to tell collections from the rest.)

It builds ``create_app(Settings(data_dir=DIR, admin_token=T))``, adds one trivial route
to that same app, ``GET /bench/const`` (constant JSON, no auth: the floor every request
pays for uvicorn + Starlette routing + middleware), and with ``--stats`` a second one,
``GET /bench/stats`` (the store's commit count, for the group-commit factor). It binds
127.0.0.1 port 0 itself, prints ``PORT <n>`` and runs uvicorn with one worker,
``log_level="warning"``, no access log, and the HTTP protocol ``pageholder serve`` runs
(``deadlines.with_deadlines``). ``--profile FILE`` runs it under cProfile and
dumps the stats to FILE when it stops (SIGTERM: uvicorn's graceful shutdown).

Load comes from wrk (``apt-get install wrk``): ``run_wrk`` / ``run_wrk_async`` run it
with a Lua script whose ``done()`` prints one ``WRK_JSON {...}`` line (requests, errors,
p50/p99 in µs), so nothing depends on wrk's text report. Every URL is 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN = "bench-admin-token-0123456789abcdef"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0

# The default layout's Normal zone: pfns [1048576, 4194304), blocks 32..127 of 32768 pages.
NORMAL_START = 1 << 20
NORMAL_END = 1 << 22
BLOCK_PAGES = 32768


# --- the server process ------------------------------------------------------------------


class Server:
    """A registry in a child process on 127.0.0.1; a context manager that stops it."""

    def __init__(
        self, data_dir: str = ":memory:", *, stats: bool = False, profile: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.stats = stats
        self.profile = profile
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def start(self) -> Server:
        args = [sys.executable, "-m", "bench._server", "--data-dir", self.data_dir]
        args += ["--token", TOKEN]
        if self.stats:
            args.append("--stats")
        if self.profile:
            args += ["--profile", self.profile]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()  # the child prints it before serving
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"bench server did not start: {line!r}\n{self.log()}")
        self.port = int(line.split()[1])
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bench server not ready:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM (graceful: in-flight requests finish, the store closes), then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


def _serve(argv: list[str]) -> None:
    import uvicorn

    from pageholder.service.api.app import create_app
    from pageholder.service.api.deadlines import with_deadlines
    from pageholder.service.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench._server")
    parser.add_argument("--data-dir", default=":memory:")
    parser.add_argument("--token", required=True)
    parser.add_argument("--stats", action="store_true")
    parser.add_argument("--profile")
    opts = parser.parse_args(argv)

    settings = Settings(data_dir=opts.data_dir, admin_token=opts.token)
    app = create_app(settings)

    async def const() -> dict[str, bool]:  # async: no thread-pool hop, the cheapest route
        return {"ok": True}

    app.add_api_route("/bench/const", const, methods=["GET"], include_in_schema=False)
    if os.environ.get("BENCH_NO_GC"):  # to tell collections from the rest
        import gc

        gc.disable()
    lag = os.environ.get("BENCH_LAG", "").replace("{pid}", str(os.getpid()))
    if lag:  # where the loop stalls (bench/_lag.py), written at shutdown
        from contextlib import asynccontextmanager

        from . import _lag

        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(started: Any) -> Any:
            dump = _lag.install(lag)
            try:
                async with inner(started) as state:
                    yield state
            finally:
                dump()

        app.router.lifespan_context = lifespan
    if opts.stats:

        async def stats() -> dict[str, Any]:
            journal = app.state.service.registry.journal
            return {"commits": None if journal is None else journal.commits}

        app.add_api_route("/bench/stats", stats, methods=["GET"], include_in_schema=False)

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when
    # proto is TCP; with proto 0 every response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    # the protocol `pageholder serve` runs (read deadlines, the event streams' chunk writes)
    protocol = with_deadlines(settings.header_timeout_s, settings.body_timeout_s)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, workers=1, http=protocol
    )
    server = uvicorn.Server(config)
    if not opts.profile:
        server.run(sockets=[sock])
        return
    import cProfile

    # uvicorn re-raises the SIGTERM it caught once it has shut down; the default action
    # would end the process before the profile is written.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run(sockets=[sock])
    finally:
        profiler.disable()
        profiler.dump_stats(opts.profile)


def print_profile(path: str, limit: int = 30) -> None:
    """The top of a ``--profile`` dump, by own time and by cumulative time."""
    import pstats

    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


# --- wrk ---------------------------------------------------------------------------------

WRK_MISSING = (
    "wrk is not installed; these benchmarks need it as their load generator:\n"
    "    apt-get update && apt-get install -y wrk"
)

# Appended to every script: one machine-readable line, whatever wrk's text report says.
LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, thread in ipairs(bench_threads or {}) do
    for _, name in ipairs({"puts", "deletes"}) do
      counts[name] = (counts[name] or 0) + (thread:get(name) or 0)
    end
  end
  io.write(string.format(
    "WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"non2xx\": %d, \"connect\": %d,"
    .. " \"read\": %d, \"write\": %d, \"timeout\": %d, \"p50_us\": %d, \"p99_us\": %d,"
    .. " \"puts\": %d, \"deletes\": %d}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), counts.puts or 0, counts.deletes or 0))
end
"""

# Gives every wrk thread an ``id`` (0, 1, ...) in its own Lua state; ``done()`` sums the
# threads' ``puts`` and ``deletes`` globals, if a script keeps them.
LUA_THREAD_IDS = r"""
bench_threads = {}
setup = function(thread)
  thread:set("id", #bench_threads)
  bench_threads[#bench_threads + 1] = thread
end
"""


def lua_headers(*extra: str) -> str:
    """A Lua table literal with the admin bearer token (and ``extra`` pairs "k", "v")."""
    pairs = [f'["Authorization"] = "Bearer {TOKEN}"']
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        pairs.append(f'["{key}"] = "{value}"')
    return "{" + ", ".join(pairs) + "}"


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_us: int
    p99_us: int
    puts: int = 0  # counted by scripts that keep ``puts`` / ``deletes``
    deletes: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def check(self, what: str) -> WrkResult:
        """Refuse a run in which any request failed: its rate would mean nothing."""
        if self.non2xx or self.socket_errors or not self.requests:
            raise RuntimeError(
                f"{what}: {self.requests} requests, {self.non2xx} non-2xx answers, "
                f"{self.socket_errors} socket errors; the run is not valid"
            )
        return self


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(WRK_MISSING)
    return path


def _wrk_args(
    script: str, path: str, *, seconds: float, threads: int, connections: int
) -> tuple[list[str], str]:
    fd, name = tempfile.mkstemp(suffix=".lua", prefix="bench-")
    with os.fdopen(fd, "w") as out:
        out.write(script + "\n" + LUA_DONE)
    args = [wrk_path(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    args += ["--timeout", "30s", "-s", name, path]
    return args, name


def _wrk_parse(output: str, args: list[str]) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            doc = json.loads(line[len("WRK_JSON ") :])
            return WrkResult(
                requests=doc["requests"],
                seconds=doc["duration_us"] / 1e6,
                non2xx=doc["non2xx"],
                socket_errors=doc["connect"] + doc["read"] + doc["write"] + doc["timeout"],
                p50_us=doc["p50_us"],
                p99_us=doc["p99_us"],
                puts=doc["puts"],
                deletes=doc["deletes"],
            )
    raise RuntimeError(f"no WRK_JSON line from {' '.join(args)}:\n{output[-2000:]}")


def run_wrk(
    url: str, script: str, *, seconds: float, threads: int = 2, connections: int = 32
) -> WrkResult:
    """Run wrk against ``url`` (a 127.0.0.1 URL) with a Lua ``script``, blocking."""
    assert url.startswith(f"http://{HOST}:"), url
    args, name = _wrk_args(script, url, seconds=seconds, threads=threads, connections=connections)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(name)
    return _wrk_parse(done.stdout + done.stderr, args)


async def run_wrk_async(
    url: str, script: str, *, seconds: float, threads: int = 2, connections: int = 32
) -> WrkResult:
    """``run_wrk`` that keeps the event loop running (receivers served in this process)."""
    assert url.startswith(f"http://{HOST}:"), url
    args, name = _wrk_args(script, url, seconds=seconds, threads=threads, connections=connections)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    finally:
        os.unlink(name)
    return _wrk_parse(out.decode(), args)


# --- reporting ----------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    measured: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None  # None: information, no target
    shortfall: str = ""


def ratio_row(
    measure: str, measured: str, baseline: str, ratio: float, target: float, higher: bool = True
) -> Row:
    """A row whose ``ratio`` must be at least (``higher``) or at most ``target``."""
    passed = ratio >= target if higher else ratio <= target
    if passed:
        short = ""
    elif higher:
        short = f"{ratio / target:.2f} of the target; needs {target / ratio:.2f}x more"
    else:
        short = f"{ratio / target:.2f}x over the target"
    sign = "≥" if higher else "≤"
    return Row(measure, measured, baseline, f"{ratio:.2f}x", f"{sign} {target:g}x", passed, short)


def info_row(measure: str, measured: str, baseline: str = "", ratio: str = "") -> Row:
    return Row(measure, measured, baseline or "—", ratio or "—", "—", None)


def table(rows: list[Row]) -> str:
    lines = [
        "| measure | measured | baseline (same run) | ratio | target | result |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        result = "—" if r.passed is None else "pass" if r.passed else f"MISS ({r.shortfall})"
        lines.append(
            f"| {r.measure} | {r.measured} | {r.baseline} | {r.ratio} | {r.target} | {result} |"
        )
    return "\n".join(lines)


def fmt_rate(per_s: float, unit: str = "req/s") -> str:
    return f"{per_s:,.0f} {unit}"


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


if __name__ == "__main__":
    _serve(sys.argv[1:])
