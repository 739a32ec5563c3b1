"""A client given several URLs, against real processes on loopback: a port where nothing
listens, a real HTTP server playing a standby (every call: 503 ``not_leader`` naming
whom it is told, with ``Retry-After``), a real HTTP server that reads a request and
never answers, and two real ``pageholder serve``. The SDK and the CLI go to whichever
leads, stay there, and never send a call that may have been applied a second time.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pageholder.client import OutcomeUnknown, PageHolderClient, Timeout

from .servers import (
    HOST,
    Server,
    free_port,
    pageholder_command,
    run_pageholder,
    running_server,
    server_env,
)

pytestmark = pytest.mark.integration

TOKEN = "failover-admin-token-0123456789"
NORMAL = 1 << 20
#: How long the silent server keeps a request unanswered at most (the client gives up
#: after its read timeout, well before).
SILENT_FOR_S = 10.0


class FakeRegistry:
    """A real loopback HTTP server: a standby (``leader``: the URL it names), or silent
    (reads each request, answers nothing until stopped). Counts what it was sent."""

    def __init__(self, *, leader: str | None = None, silent: bool = False) -> None:
        self.leader = leader
        self.silent = silent
        self.requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fake.requests.append((self.command, self.path))
                if fake.silent:
                    fake.stopping.wait(SILENT_FOR_S)
                    return
                body = json.dumps(
                    {
                        "type": "urn:pageholder:problem:not_leader",
                        "title": "Not the leader",
                        "status": 503,
                        "detail": "this registry is a standby",
                        "code": "not_leader",
                        "leader": fake.leader,
                    }
                ).encode()
                self.send_response(503)
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def registries(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    with (
        running_server(tmp_path / "a", admin_token=TOKEN) as a,
        running_server(tmp_path / "b", admin_token=TOKEN) as b,
    ):
        yield a, b


def holders_of(server: Server) -> list[str]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        return [h["name"] for h in api.get("/v1/holders").json()["items"]]


def test_the_client_finds_the_leader_stays_there_and_follows_a_takeover(
    registries: tuple[Server, Server],
) -> None:
    a, b = registries
    dead = f"http://{HOST}:{free_port()}"  # nothing listens: connection refused
    with FakeRegistry(leader=a.url) as standby:
        urls = [dead, standby.url, a.url, b.url]
        with PageHolderClient(urls, TOKEN, failover_timeout_s=10) as client:
            # refused (never sent), then not_leader (not applied): safe for a POST
            client.create_holder("nic0", description="failover test")
            assert client.url == a.url
            assert standby.requests == [("POST", "/v1/holders")]
            client.hold(NORMAL, "nic0", order=9)
            assert client.owner(NORMAL + 5).holder == "nic0"
            assert len(standby.requests) == 1  # sticky: straight to a
            assert holders_of(a) == ["nic0"] and holders_of(b) == []

            # The watch goes where the calls go.
            events = client.watch(since=0)
            assert [next(events).type, next(events).type] == ["holder.created", "hold.created"]
            events.close()

            # a stops, the standby names b: the next call goes there.
            a.stop()
            standby.leader = b.url
            assert client.list_holders() == []  # b's own (in-memory) state
            assert client.url == b.url

            # A leader URL that is not configured is not called: the token stays home.
            elsewhere = FakeRegistry(leader=None)
            with elsewhere:
                standby.leader = elsewhere.url
                with PageHolderClient([standby.url, b.url], TOKEN) as other:
                    assert other.list_zones()
                assert elsewhere.requests == []


def test_a_call_that_may_have_been_applied_is_not_sent_again(
    registries: tuple[Server, Server],
) -> None:
    a, _ = registries
    with FakeRegistry(silent=True) as silent:
        timeout = Timeout(connect=5, read=0.5, write=5, pool=5)
        with PageHolderClient([silent.url, a.url], TOKEN, timeout=timeout) as client:
            with pytest.raises(OutcomeUnknown) as raised:
                client.create_holder("nic0")
            assert (raised.value.method, raised.value.url) == ("POST", silent.url)
            assert holders_of(a) == []  # not replayed on a
            # An idempotent call is: the silent one, then a.
            assert client.list_holders() == []
            assert client.url == a.url
        assert silent.requests == [("POST", "/v1/holders"), ("GET", "/v1/holders")]


def test_the_cli_takes_several_urls(registries: tuple[Server, Server]) -> None:
    a, _ = registries
    dead = f"http://{HOST}:{free_port()}"
    with FakeRegistry(leader=a.url) as standby:
        created = run_pageholder(
            "holder", "create", "nic0", "--url", f"{dead},{standby.url},{a.url}", "--token", TOKEN
        )
        assert created.returncode == 0, created.stderr
        shown = run_pageholder(
            "holders", "--json", "--url", f"{dead},{standby.url},{a.url}", "--token", TOKEN
        )
        assert shown.returncode == 0, shown.stderr
        assert [h["name"] for h in json.loads(shown.stdout)] == ["nic0"]
        # PAGEHOLDER_URL takes the same list.
        env = server_env(None, {"PAGEHOLDER_URL": f"{standby.url},{a.url}"})
        listed = subprocess.run(
            [*pageholder_command(), "holders", "--token", TOKEN],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "nic0" in listed.stdout
