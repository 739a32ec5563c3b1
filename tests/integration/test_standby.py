"""A standby keeps its trees warm from the leader's commits: when the leader is killed it
takes over without loading the store again, and nothing is lost or changed: holders
(their tokens still work), holds, block states, leases, and the events stream, which
goes on across the takeover with no revision missing or repeated. A shorter
``--leader-ttl`` takes over sooner."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from .registries import AUTH, NORMAL, registries, wait_ready
from .servers import Server

pytestmark = pytest.mark.integration

BLOCK_PAGES = 32768


def client(headers: dict[str, str] = AUTH) -> httpx.Client:
    return httpx.Client(headers=headers, timeout=10.0, trust_env=False)


def revisions(url: str, since: int, last: int) -> list[int]:
    """The revision of every event part from ``since`` on, until ``last`` came whole
    (bounded: a read timeout and a deadline)."""
    seen: list[int] = []
    deadline = time.monotonic() + 20
    with (
        client() as http,
        http.stream("GET", f"{url}/v1/events", params={"since": since}) as stream,
    ):
        assert stream.status_code == 200, stream.read()
        for line in stream.iter_lines():
            assert time.monotonic() < deadline, f"only got {seen[-5:]}"
            if line.startswith("data:"):
                data = json.loads(line[5:])
                if data["part"] == data["parts"]:
                    seen.append(data["rev"])
                    if data["rev"] >= last:
                        return seen
    raise AssertionError(f"the stream ended at {seen[-5:]}")


def took_over(server: Server) -> tuple[int, int]:
    """(revisions applied at takeover, revisions applied while standby), from its log."""
    log = server.stderr() + server.stdout()
    found = re.search(r"took over warm at revision \d+: (\d+) revisions applied at takeover, "
                      r"(\d+) while standby", log)
    assert found, f"no warm takeover in the log:\n{log[-3000:]}"
    return int(found[1]), int(found[2])


def following(standby: Server, rev: int) -> None:
    """Until the standby says it has applied ``rev`` (its refusals say how far it is)."""
    deadline = time.monotonic() + 20
    with client() as http:
        while True:
            detail = http.get(f"{standby.url}/readyz").json()["detail"]
            if f"following the leader's commits, at revision {rev})" in detail:
                return
            assert time.monotonic() < deadline, detail
            time.sleep(0.05)


def test_a_warm_standby_takes_over_without_a_reload_and_loses_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    with registries(tmp_path, pg_url, 2, args=["--leader-ttl", "2"]) as (leader, standby):
        with client() as http:
            nic = http.post(f"{leader.url}/v1/holders", json={"name": "nic0", "lease_ttl_s": 60})
            assert nic.status_code == 201
            token = nic.json()["token"]
            assert http.post(f"{leader.url}/v1/holders", json={"name": "gone"}).status_code == 201
            for n in range(30):
                put = http.put(f"{leader.url}/v1/pages/{NORMAL + n}/hold", json={"holder": "nic0"})
                assert put.status_code == 201, put.text
            batch = {"holder": "nic0", "ranges": [{"start_pfn": NORMAL + 4096, "nr_pages": 5000}]}
            assert http.post(f"{leader.url}/v1/holds/batch-set", json=batch).status_code == 200
            unset = {"ranges": [{"start_pfn": NORMAL + 5000, "nr_pages": 100}]}
            assert http.post(f"{leader.url}/v1/holds/batch-unset", json=unset).status_code == 200
            put = http.put(f"{leader.url}/v1/pages/{NORMAL + 12_000}/hold", json={"holder": "gone"})
            assert put.status_code == 201
            gone = http.delete(f"{leader.url}/v1/holders/gone", params={"force": "true"})
            assert gone.status_code in (200, 204), gone.text
            empty = (NORMAL + 4 * BLOCK_PAGES) // BLOCK_PAGES
            offline = http.post(f"{leader.url}/v1/blocks/{empty}/offline", json={})
            assert offline.status_code == 200, offline.text
            last = int(http.get(f"{leader.url}/v1/zones").headers["X-Pageholder-Revision"])
            following(standby, last)  # it applied these as a standby
            put = http.put(f"{leader.url}/v1/pages/{NORMAL + 10}/hold", json={"holder": "nic0"})
            assert put.status_code == 200  # unchanged: no revision
        leader.process.kill()
        wait_ready(standby, 20)
        at_takeover, while_standby = took_over(standby)
        assert while_standby == last and at_takeover == 0
        with client() as http, client({"Authorization": f"Bearer {token}"}) as nic0:
            held = nic0.put(f"{standby.url}/v1/pages/{NORMAL + 20_000}/hold", json={})
            assert held.status_code == 201, held.text  # the holder's token still works
            view = http.get(f"{standby.url}/v1/holders/nic0").json()
            assert view["holds"] == 30 + 5000 - 100 + 1 and view["lease"]["state"] == "live"
            assert http.get(f"{standby.url}/v1/holders/gone").status_code == 404
            assert http.get(f"{standby.url}/v1/pages/{NORMAL + 12_000}").json()["held"] is False
            assert http.get(f"{standby.url}/v1/pages/{NORMAL + 5050}").json()["held"] is False
            assert http.get(f"{standby.url}/v1/pages/{NORMAL + 5100}").json()["held"] is True
            assert http.get(f"{standby.url}/v1/blocks/{empty}").json()["state"] == "offline"
        # every revision once, in order, the old leader's and the new one's
        assert revisions(standby.url, 0, last + 1) == list(range(1, last + 2))


def takeover_s(tmp_path: Path, pg_url: str, ttl: str) -> float:
    with registries(tmp_path, pg_url, 2, args=["--leader-ttl", ttl]) as (leader, standby):
        leader.process.kill()
        killed = time.monotonic()
        wait_ready(standby, 60)
        return time.monotonic() - killed


def test_a_shorter_leader_ttl_takes_over_sooner(tmp_path: Path, pg_url: str) -> None:
    short = takeover_s(tmp_path / "short", pg_url, "1")
    long = takeover_s(tmp_path / "long", pg_url, "5")
    # the lease runs out between 2/3 of a ttl and a ttl after the kill (it was renewed
    # every third of it), then a try comes every third of it
    assert short < 4.0, short
    assert long > 3.0, long
    assert short < long
