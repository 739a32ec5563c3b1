"""A network cut between the leader and PostgreSQL fails over, and loses nothing.

Topology (root only; made and removed by the test, names ``phpg<pid>...``)::

    root namespace                              namespace phpg<pid>
    PostgreSQL on 127.0.0.1 and 10.231.N.1 ---- veth "db" ---- 10.231.N.2  leader
    the test                      10.232.N.1 ---- veth "api" --- 10.232.N.2  (its HTTP)
    standby on 127.0.0.1 (the database over loopback)

The leader runs under ``ip netns exec`` and reaches PostgreSQL only through the "db"
link; the test reaches its HTTP through the other one. Cutting "db" (link down) leaves
the leader running and answering: it must stop acknowledging writes (503 from its
lapsed lease, or it exits), the standby must take over within the detection bound, and
every write either one acknowledged must be on the new leader.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..postgres import PostgresServer, find_binaries
from . import netns
from .registries import AUTH, NORMAL, TOKEN, hold, start_registry, wait_ready
from .servers import Server, pageholder_command, server_env
from .test_failover import held_on

pytestmark = pytest.mark.integration

PREFIX = "phpg"
TTL = "2"
#: the lease runs out at most a ttl after the cut, then a standby tries every third of it
TAKEOVER_S = 15.0


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def sweep() -> None:
    """Remove what a killed earlier run of this test left (its pid is gone)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in re.findall(rf"^({PREFIX}(\d+))\b", listed, re.M):
        if not Path(f"/proc/{name[1]}").exists():
            subprocess.run(["ip", "netns", "del", name[0]], capture_output=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for link, pid in re.findall(rf"^\d+: ({PREFIX}(\d+)[da])@", links, re.M):
        if not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "link", "del", link], capture_output=True)


@contextlib.contextmanager
def namespace() -> Iterator[tuple[str, int]]:
    """The namespace and its two links; ``N`` of the addresses. Removed on exit."""
    why = netns.available()
    if why is not None:
        pytest.skip(why)
    sweep()
    pid = os.getpid()
    ns, n = f"{PREFIX}{pid}", pid % 250 + 1
    try:
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        for side, net in (("d", 231), ("a", 232)):
            outer, inner = f"{PREFIX}{pid}{side}", f"{side}{pid}"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"10.{net}.{n}.1/30", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", ns, "addr", "add", f"10.{net}.{n}.2/30", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
        yield ns, n
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for side in "da":  # gone with the namespace's end of the pair; in case not
            subprocess.run(["ip", "link", "del", f"{PREFIX}{pid}{side}"], capture_output=True)


class ReachablePostgres(PostgresServer):
    """A PostgreSQL of this test's own that listens on loopback and the "db" link."""

    def __init__(self, binaries: Path, address: str) -> None:
        super().__init__(binaries)
        self.address = address
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")

    def options(self) -> str:
        return super().options().replace("-h 127.0.0.1", f"-h 127.0.0.1,{self.address}")


class NsServer(Server):
    host: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def start_in(ns: str, workdir: Path, host: str, store: str) -> NsServer:
    port = 8080
    command = [
        "ip", "netns", "exec", ns, *pageholder_command(), "serve", "--host", host,
        "--port", str(port), "--data-dir", ":memory:", "--store", store,
        "--advertise-url", f"http://{host}:{port}", "--leader-ttl", TTL,
    ]  # fmt: skip
    out, err = workdir / "leader.out", workdir / "leader.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
            env=server_env(TOKEN),
        )  # fmt: skip
    server = NsServer(process, command, port, out, err)
    server.host = host
    return server


def test_a_cut_between_the_leader_and_postgresql_fails_over(tmp_path: Path) -> None:
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed")
    servers: list[Server] = []
    with namespace() as (ns, n):
        postgres = ReachablePostgres(binaries, f"10.231.{n}.1")
        try:
            postgres.start()
            url = postgres.create_database()
            through_db_link = url.replace("127.0.0.1", postgres.address)
            leader = start_in(ns, tmp_path, f"10.232.{n}.2", through_db_link)
            servers.append(leader)
            leader.wait_healthy(path="/readyz")
            standby = start_registry(tmp_path, url, ["--leader-ttl", TTL])
            servers.append(standby)
            urls = [leader.url, standby.url]
            acknowledged: list[int] = []
            with httpx.Client(headers=AUTH, timeout=10.0, trust_env=False) as http:
                made = http.post(f"{leader.url}/v1/holders", json={"name": "nic0"})
                assert made.status_code == 201
                for i in range(20):
                    assert hold(http, [leader.url], NORMAL + i, time.monotonic() + 10)
                    acknowledged.append(NORMAL + i)
                _ip("-n", ns, "link", "set", f"d{os.getpid()}", "down")  # the cut
                cut = time.monotonic()
                # The cut-off leader: a write now is refused or never acknowledged.
                late = http.put(
                    f"{leader.url}/v1/pages/{NORMAL + 100}/hold", json={"holder": "nic0"}
                )
                if late.status_code in (200, 201):
                    acknowledged.append(NORMAL + 100)
                else:
                    assert late.status_code == 503, late.text
                wait_ready(standby, TAKEOVER_S)
                took = time.monotonic() - cut
                for i in range(200, 220):
                    assert hold(http, urls, NORMAL + i, time.monotonic() + 20)
                    acknowledged.append(NORMAL + i)
                # The old leader acknowledges nothing any more (or has exited).
                with contextlib.suppress(httpx.TransportError):
                    again = http.put(
                        f"{leader.url}/v1/pages/{NORMAL + 300}/hold", json={"holder": "nic0"}
                    )
                    assert again.status_code == 503, again.text
                    assert again.json()["code"] in ("not_leader", "storage_unavailable")
            assert took < TAKEOVER_S, took
            assert held_on(standby.url, acknowledged) == acknowledged
            assert NORMAL + 300 not in held_on(standby.url, [NORMAL + 300])
        finally:
            for server in servers:
                server.stop()
                print(server.output())
            postgres.destroy()
