"""A takeover of a big registry: a warm standby against one that loads the whole store.

A database holding 10^6 order-0 holds of 8 holders (distinct stamps: no run longer than
one row) written straight into it; a leader and a standby on it (``--leader-ttl 2``).
Once the standby is up (warm: it loaded the store and follows), the leader sets 100 more
holds, is SIGKILLed, and a client PUTs a hold on the standby every 50 ms until one
succeeds: the time from the kill to that answer. ``warm`` is the default;
``cold`` runs both registries with ``PAGEHOLDER_STANDBY_FOLLOW=false`` (the standby
loads the store only when it takes over, as before following existed). Alternating,
twice each; median.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._report import header, write_section
from pageholder.service.core.journal import HolderOp, HoldOp
from pageholder.service.storage.postgres import PgStore
from tests.integration.registries import AUTH, start_registry
from tests.postgres import PostgresServer, install

HOLDS = 1_000_000
HOLDERS = [f"h{i}" for i in range(8)]
NORMAL = 1 << 20
RUNS = 2
TTL = "2"
#: what a standby that loaded the store (and now follows) says in its refusals
FOLLOWING = "following the leader's commits"


def _fill(url: str) -> None:
    ops: list[object] = [HolderOp(n, None, 10.0, "", 1.7e9, "x", "whsec_x") for n in HOLDERS]
    ops.extend(
        HoldOp(pfn, 0, HOLDERS[(pfn >> 3) % 8], 1_700_000_000_000_000 + i)
        for i, pfn in enumerate(range(NORMAL, NORMAL + HOLDS))
    )
    store = PgStore.open(url)
    store._transaction(ops)  # type: ignore[arg-type]
    store.close_now()


def takeover(work: Path, url: str, warm: bool) -> float:
    env = {} if warm else {"PAGEHOLDER_STANDBY_FOLLOW": "false"}
    args = ["--leader-ttl", TTL]
    leader = start_registry(work, url, args, env)
    standby = None
    try:
        leader.wait_healthy(timeout_s=120, path="/readyz")
        standby = start_registry(work, url, args, env)
        deadline = time.monotonic() + 300
        while warm and FOLLOWING not in httpx.get(f"{standby.url}/readyz").json()["detail"]:
            assert time.monotonic() < deadline, standby.output()
            time.sleep(0.1)
        with httpx.Client(headers=AUTH, timeout=10) as http:
            base = NORMAL + HOLDS + 1000
            for i in range(100):
                put = http.put(f"{leader.url}/v1/pages/{base + i}/hold", json={"holder": "h0"})
                assert put.status_code in (200, 201), put.text
            time.sleep(1.5)  # the standby's follower has seen them (warm), or not (cold)
            leader.process.kill()
            leader.process.wait()
            killed = time.monotonic()
            while True:
                assert time.monotonic() - killed < 300, standby.output()
                page = f"{standby.url}/v1/pages/{base + 500}/hold"
                answer = http.put(page, json={"holder": "h0"})
                if answer.status_code == 201:
                    break
                time.sleep(0.05)
            took = time.monotonic() - killed
            # the new leader put the test's write down; delete it for the next run
            http.delete(f"{standby.url}/v1/pages/{base + 500}/hold").raise_for_status()
            for i in range(100):
                http.delete(f"{standby.url}/v1/pages/{base + i}/hold").raise_for_status()
        return took
    finally:
        for server in (leader, standby):
            if server is not None:
                server.stop()


def main() -> None:
    binaries = install()
    if isinstance(binaries, str):
        sys.exit(f"bench takeover: {binaries}")
    began = time.monotonic()
    postgres = PostgresServer(binaries, fsync=True)
    postgres.start()
    times: dict[str, list[float]] = {"warm": [], "cold": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-takeover-") as tmp:
            url = postgres.create_database()
            _fill(url)
            for run in range(RUNS):
                for mode in ("warm", "cold") if run % 2 == 0 else ("cold", "warm"):
                    took = takeover(Path(tmp) / f"{mode}{run}", url, mode == "warm")
                    times[mode].append(took)
                    print(f"  {mode}: {took:.2f} s", flush=True)
    finally:
        postgres.destroy()
    warm, cold = statistics.median(times["warm"]), statistics.median(times["cold"])
    text = header("Standby takeover of a big registry", "python -m bench takeover",
                  time.monotonic() - began)  # fmt: skip
    text += (
        "| measure | warm standby | full load at takeover | ratio |\n|---|---|---|---|\n"
        f"| leader SIGKILL to the first successful write on the standby, {HOLDS:,} holds,"
        f" lease {TTL} s (median of {RUNS}; all: warm"
        f" {', '.join(f'{t:.2f}' for t in times['warm'])}, cold"
        f" {', '.join(f'{t:.2f}' for t in times['cold'])}) | {warm:.2f} s | {cold:.2f} s |"
        f" {warm / cold:.2f}x |\n\n"
        "Both include the lease running out (up to the ttl after the last renewal) and the"
        " standby's next try (every third of it); the difference is the load: a warm"
        " standby applies only the revisions it has not seen (none here: its follower"
        " polled in time), a cold one reads every hold.\n"
    )
    write_section("Standby takeover of a big registry", text)
    print(text)


if __name__ == "__main__":
    main()
