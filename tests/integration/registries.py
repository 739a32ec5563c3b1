"""Several real ``pageholder serve --store postgresql://...`` processes on one database:
started as leader or standby, found by their answers, written to by a client that
follows ``not_leader`` as the SDK does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from .servers import Server, start_server

TOKEN = "failover-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NORMAL = 1 << 20


def start_registry(
    workdir: Path, store: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Server:
    """A registry on ``store``, once its /healthz answers (leader or standby); ``env``:
    settings given to it (PAGEHOLDER_...)."""
    return start_server(
        workdir,
        admin_token=TOKEN,
        args=["--store", store, *args],
        env=env,
        advertise=True,
        ready_path="/healthz",
    )


@contextlib.contextmanager
def registries(
    workdir: Path, store: str, count: int, args: Sequence[str] = ()
) -> Iterator[list[Server]]:
    """``count`` registries; the first started leads (it is ready before the next starts)."""
    servers: list[Server] = []
    try:
        for i in range(count):
            servers.append(start_registry(workdir, store, args))
            if i == 0:
                servers[0].wait_healthy(path="/readyz")
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    server.process.send_signal(18)  # SIGCONT: a paused one must hear SIGTERM
            server.stop()
            print(server.output())


def wait_ready(server: Server, timeout_s: float) -> float:
    """Seconds until ``server``'s /readyz answers 200 (it leads and has loaded)."""
    began = time.monotonic()
    server.wait_healthy(timeout_s=timeout_s, path="/readyz")
    return time.monotonic() - began


def hold(http: httpx.Client, urls: Sequence[str], pfn: int, deadline: float) -> bool:
    """PUT a hold for ``nic0`` on whichever registry leads (bounded by ``deadline``);
    True once acknowledged, False if no registry acknowledged it in time."""
    target = urls[0]
    while time.monotonic() < deadline:
        try:
            answer = http.put(f"{target}/v1/pages/{pfn}/hold", json={"holder": "nic0"})
        except httpx.TransportError:
            target = urls[(urls.index(target) + 1) % len(urls)]
            time.sleep(0.05)
            continue
        if answer.status_code in (200, 201):
            return True
        assert answer.status_code == 503, answer.text  # not_leader / not_ready / not saved
        leader = answer.json().get("leader")
        if leader in urls and leader != target:
            target = leader
        else:
            target = urls[(urls.index(target) + 1) % len(urls)]
            time.sleep(0.05)
    return False
