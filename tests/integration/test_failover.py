"""Two registries on one PostgreSQL database: the leader dies, pauses, or loses the
database, and no acknowledged hold is lost; a paused leader cannot land a late write."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from ..postgres import PostgresServer
from .registries import AUTH, NORMAL, hold, registries, wait_ready

pytestmark = pytest.mark.integration

WRITERS = 8
#: the issue's bound: a standby serves writes this soon after the leader died
TAKEOVER_S = 10.0


def client() -> httpx.Client:
    return httpx.Client(headers=AUTH, timeout=5.0, trust_env=False)


def held_on(url: str, pfns: list[int]) -> list[int]:
    """Which of ``pfns`` ``url`` says are held by nic0 (one listing per block)."""
    with client() as http:
        found: set[int] = set()
        cursor = None
        while True:
            params: dict[str, str | int] = {"holder": "nic0", "limit": 10000}
            if cursor:
                params["cursor"] = cursor
            page = http.get(f"{url}/v1/pages", params=params).json()
            found.update(item["pfn"] for item in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return [p for p in pfns if p in found]


def test_eight_writers_lose_nothing_when_the_leader_is_killed(tmp_path: Path, pg_url: str) -> None:
    with registries(tmp_path, pg_url, 2) as (leader, standby):
        urls = [leader.url, standby.url]
        with client() as http:
            assert http.post(f"{leader.url}/v1/holders", json={"name": "nic0"}).status_code == 201
            refused = http.get(f"{standby.url}/v1/zones")
            assert refused.status_code == 503 and refused.json()["leader"] == leader.url
            assert int(refused.headers["retry-after"]) >= 1
        acknowledged: list[list[int]] = [[] for _ in range(WRITERS)]
        stop = threading.Event()
        deadline = time.monotonic() + 60

        def write(w: int) -> None:
            with client() as http:
                n = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    pfn = NORMAL + w * 100_000 + n
                    if hold(http, urls, pfn, deadline):
                        acknowledged[w].append(pfn)
                    n += 1

        threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
        for thread in threads:
            thread.start()
        while sum(map(len, acknowledged)) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        leader.process.kill()
        killed = time.monotonic()
        before = sum(map(len, acknowledged))
        wait_ready(standby, TAKEOVER_S + 5)
        while sum(map(len, acknowledged)) <= before + 2 * WRITERS:  # writes land again
            assert time.monotonic() < deadline
            time.sleep(0.05)
        took = time.monotonic() - killed
        stop.set()
        for thread in threads:
            thread.join(30)
        assert took < TAKEOVER_S + 1, f"the standby took {took:.1f} s to serve writes"
        everything = [pfn for pfns in acknowledged for pfn in pfns]
        assert held_on(standby.url, everything) == everything  # every acknowledged hold
    with psycopg.connect(pg_url) as db:
        revs = [rev for (rev,) in db.execute("SELECT rev FROM events ORDER BY rev")]
        epoch = db.execute("SELECT epoch FROM leader").fetchone()
    assert len(revs) == len(set(revs)) and revs == sorted(revs)
    assert len(revs) >= len(everything) + 1  # a revision per hold (and the holder)
    assert epoch == (2,)


def test_a_paused_leader_cannot_write_after_its_lease_ran_out(tmp_path: Path, pg_url: str) -> None:
    with registries(tmp_path, pg_url, 2, args=["--leader-ttl", "2"]) as (leader, standby):
        with client() as http:
            assert http.post(f"{leader.url}/v1/holders", json={"name": "nic0"}).status_code == 201
            leader.process.send_signal(signal.SIGSTOP)
            wait_ready(standby, 20)  # took over: the paused leader's lease ran out
            late: list[httpx.Response] = []
            sender = threading.Thread(
                target=lambda: late.append(
                    http.put(f"{leader.url}/v1/pages/{NORMAL}/hold", json={"holder": "nic0"})
                )
            )
            sender.start()
            time.sleep(0.2)  # the request waits in the paused leader's socket
            leader.process.send_signal(signal.SIGCONT)
            sender.join(30)
            assert late and late[0].status_code == 503, late
            assert late[0].json()["code"] in ("not_leader", "storage_unavailable")
            page = http.get(f"{standby.url}/v1/pages/{NORMAL}").json()
            assert page["held"] is False
            # the new leader writes; the old one steps down (exits: a supervisor restarts it)
            assert hold(http, [standby.url], NORMAL + 1, time.monotonic() + 10)
        assert leader.process.wait(30) != 0
        assert "stepped down" in leader.stderr() + leader.stdout()
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT pfn FROM holds").fetchall() == [(NORMAL + 1,)]


def test_a_restart_of_postgresql_loses_nothing(
    tmp_path: Path, postgres: PostgresServer, pg_url: str
) -> None:
    with registries(tmp_path, pg_url, 2, args=["--leader-ttl", "3"]) as servers:
        urls = [s.url for s in servers]
        acknowledged: list[int] = []
        with client() as http:
            assert http.post(f"{urls[0]}/v1/holders", json={"name": "nic0"}).status_code == 201
            for n in range(20):
                assert hold(http, urls, NORMAL + n, time.monotonic() + 10)
                acknowledged.append(NORMAL + n)
            postgres.restart()
            deadline = time.monotonic() + 40
            for n in range(20, 40):  # answered once a registry leads again
                assert hold(http, urls, NORMAL + n, deadline)
                acknowledged.append(NORMAL + n)
        serving = [s for s in servers if s.process.poll() is None]
        with client() as http:
            leading = [s for s in serving if http.get(f"{s.url}/readyz").status_code == 200]
        assert len(leading) == 1
        assert held_on(leading[0].url, acknowledged) == acknowledged
