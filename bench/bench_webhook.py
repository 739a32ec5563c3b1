"""The cost of checking release targets: the checked transport against httpx's own.

Run: ``.venv/bin/python -m bench webhook``. ``BENCH_QUICK=1`` makes a short run that
leaves RESULTS.md alone.

One receiver (Starlette on uvicorn, 127.0.0.1, in this process's event loop) answers
every release call 204. A ``WebhookCaller`` sends one-page release calls to it, one
after the other, through either the ``CheckedTransport`` (resolve, check every address,
connect to the checked one) or the baseline, httpx's default transport (no check), in
three modes: a kept-alive connection (the check never runs: the connection was checked
once), a new connection per call to ``127.0.0.1`` (a numeric ``getaddrinfo`` per call)
and a new connection per call to ``localhost`` (a real lookup per call, both sides).
The receiver's ``Connection: close`` forces the new connections. Each figure is the
median over ``REPS`` runs of the mean time per call, the two transports alternating.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pageholder.service.core.model import Holder, PageRef
from pageholder.service.webhooks.addresses import AddressPolicy
from pageholder.service.webhooks.caller import WebhookCaller, new_webhook_secret
from pageholder.service.webhooks.transport import CheckedTransport

from ._report import header, write_section
from ._server import Row, fmt_s, ratio_row, table

COMMAND = ".venv/bin/python -m bench webhook"
SECTION = "Release-target checks"
QUICK = os.environ.get("BENCH_QUICK") == "1"
CALLS = 100 if QUICK else 400
REPS = 3 if QUICK else 7
#: the checked transport may cost at most this much of the baseline's throughput
TARGET = 0.8
PAGES = [PageRef(1 << 20, 0)]
SECRET = new_webhook_secret()


def receiver_app() -> Starlette:
    async def keep(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    async def close(request: Request) -> Response:
        await request.body()
        return Response(status_code=204, headers={"connection": "close"})

    return Starlette(
        routes=[Route("/keep", keep, methods=["POST"]), Route("/close", close, methods=["POST"])]
    )


async def per_call(transport: httpx.AsyncBaseTransport, url: str) -> float:
    """Mean seconds per release call over CALLS calls (after one warm-up call)."""
    holder = Holder("bench", release_url=url, timeout_s=5.0, webhook_secret=SECRET)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as client:
        caller = WebhookCaller(client)

        async def call() -> None:
            answer = await caller(
                holder, PAGES, reason="release", block=None, deadline=time.time() + 10
            )
            assert not answer.failed, answer.failed

        await call()
        started = time.perf_counter()
        for _ in range(CALLS):
            await call()
        return (time.perf_counter() - started) / CALLS


async def measure() -> list[Row]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(receiver_app(), lifespan="off", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "receiver did not start"
        await asyncio.sleep(0.01)
    policy = AddressPolicy(allow_loopback=True, allow_private=False)
    modes = [
        ("release call, kept-alive connection", f"http://127.0.0.1:{port}/keep"),
        ("release call, new connection to 127.0.0.1", f"http://127.0.0.1:{port}/close"),
        ("release call, new connection to localhost", f"http://localhost:{port}/close"),
    ]
    rows: list[Row] = []
    try:
        for measure_name, url in modes:
            checked: list[float] = []
            plain: list[float] = []
            for _ in range(REPS):
                checked.append(await per_call(CheckedTransport(policy), url))
                plain.append(await per_call(httpx.AsyncHTTPTransport(trust_env=False), url))
            c, p = statistics.median(checked), statistics.median(plain)
            rows.append(ratio_row(measure_name, fmt_s(c), fmt_s(p), p / c, TARGET))
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
    return rows


def main() -> None:
    started = time.monotonic()
    rows = asyncio.run(measure())
    text = (
        header(SECTION, COMMAND, time.monotonic() - started)
        + (__doc__ or "").split("\n\n", 1)[1].split("\n\n", 1)[1].strip()
        + f"\n\nMeasured: the checked transport's time per call; baseline: httpx's default "
        f"transport's; ratio: baseline time / checked time (throughput ratio), "
        f"{CALLS} calls x {REPS} runs per mode.\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    if not QUICK:
        write_section(SECTION, text)
