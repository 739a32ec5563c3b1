"""Faults a registry must survive without lying: a full disk in the middle of a race."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pageholder.service.storage import sqlite as store_module

from .servers import free_port, run_pageholder, running_server
from .test_durability import AUTH, NORMAL, TOKEN, server_process, service, tmpfs

PAIRS = 300


def fill(mount: Path) -> None:
    """Take whatever space is left on ``mount``."""
    with (mount / "ballast").open("wb", buffering=0) as out, contextlib.suppress(OSError):
        for _ in range(1 << 16):
            out.write(b"\0" * 4096)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_full_disk_race_of_unset_and_set_keeps_memory_and_disk_equal(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "600k") as mount:
        async with service(mount) as api:
            for name in ("a", "b", "filler"):
                assert (await api.post("/v1/holders", json={"name": name})).status_code == 201
            first = {"holder": "a", "ranges": [{"start_pfn": NORMAL, "nr_pages": PAIRS}]}
            assert (await api.post("/v1/holds/batch-set", json=first)).status_code == 200
            for i in range(1, 200):
                body = {
                    "holder": "filler",
                    "ranges": [{"start_pfn": NORMAL + i * 1000, "nr_pages": 1000}],
                }
                if (await api.post("/v1/holds/batch-set", json=body)).status_code != 200:
                    break
            else:
                raise AssertionError("the disk never filled up")
            fill(mount)
            # A lets go of P while B takes it; the disk is full, so both must fail and
            # leave P as the database has it: A's.
            for i in range(PAIRS):
                pfn = NORMAL + i
                await asyncio.gather(
                    api.delete(f"/v1/pages/{pfn}/hold"),
                    api.put(f"/v1/pages/{pfn}/hold", json={"holder": "b"}),
                )
            listed = (
                await api.get(
                    "/v1/pages", params={"start": NORMAL, "end": NORMAL + PAIRS, "limit": 1000}
                )
            ).json()["items"]
            memory = {h["pfn"]: h["holder"] for h in listed}
            uri = f"file:{mount / store_module.DB_FILE}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                rows = db.execute(
                    "SELECT pfn, holder FROM holds WHERE pfn < ?", (NORMAL + PAIRS,)
                ).fetchall()
            assert memory == dict(rows)


# -- one data dir, one server ---------------------------------------------------------


@pytest.mark.integration
def test_a_second_serve_on_the_same_data_dir_refuses_naming_the_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, data_dir=str(data), admin_token=TOKEN) as first:
        second = run_pageholder(
            "serve", "--data-dir", str(data), "--port", str(free_port()), admin_token=TOKEN
        )
        assert second.returncode != 0
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.process.pid}" in lines[0] and str(data) in lines[0]
        assert "Traceback" not in second.stdout + second.stderr
        # the first one keeps serving, undisturbed
        assert httpx.get(f"{first.url}/readyz", trust_env=False).status_code == 200


# -- a read-only data dir after a crash ---------------------------------------------------


def crash_with_holds(mount: Path, tmp_path: Path, count: int) -> None:
    """A real server on ``mount`` that acknowledges ``count`` holds, then is SIGKILLed."""
    port = free_port()
    with server_process(mount, port, tmp_path / "server.log") as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as api:
            assert api.post("/v1/holders", json={"name": "nic0"}).status_code == 201
            for i in range(count):
                response = api.put(f"/v1/pages/{NORMAL + i}/hold", json={"holder": "nic0"})
                assert response.status_code == 201
        process.send_signal(signal.SIGKILL)
        process.wait(10)


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
async def test_a_read_only_data_dir_after_a_crash_serves_what_the_wal_holds(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro", "8m") as mount:
        crash_with_holds(mount, tmp_path, 40)
        assert (mount / (store_module.DB_FILE + "-wal")).stat().st_size > 0  # not checkpointed
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        async with service(mount) as api:
            items = (await api.get("/v1/pages", params={"limit": 100})).json()["items"]
            assert [h["pfn"] for h in items] == [NORMAL + i for i in range(40)]
            refused = await api.put(f"/v1/pages/{NORMAL + 99}/hold", json={"holder": "nic0"})
            assert refused.status_code == 503


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_read_only_data_dir_with_an_unreadable_wal_refuses_in_one_true_line(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "ro", "8m") as mount:
        crash_with_holds(mount, tmp_path, 5)
        (mount / (store_module.DB_FILE + "-shm")).unlink()  # SQLite cannot read the WAL now
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        result = run_pageholder(
            "serve", "--data-dir", str(mount), "--port", str(free_port()), admin_token=TOKEN
        )
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "write-ahead log" in lines[0], result.stderr
        assert "schema upgrade" not in result.stderr


# -- slow clients and shutdown ------------------------------------------------------------


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes ``sock`` within ``seconds`` (whatever it sent first)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return False


@pytest.mark.integration
def test_slow_header_and_slow_body_connections_are_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGEHOLDER_HEADER_TIMEOUT_S", "1")
    monkeypatch.setenv("PAGEHOLDER_BODY_TIMEOUT_S", "1")
    port = free_port()
    with server_process(tmp_path / "data", port, tmp_path / "server.log"):
        silent = socket.create_connection(("127.0.0.1", port))
        slow_header = socket.create_connection(("127.0.0.1", port))
        slow_header.sendall(b"GET /healthz HTTP/1.1\r\nHost: r\r\nX-Slow: ")
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(
            b"POST /v1/holds/batch-set HTTP/1.1\r\nHost: r\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000\r\n\r\n{\"pages\": ["
        )
        with silent, slow_header, slow_body:
            for sock in (silent, slow_header, slow_body):
                assert closed_within(sock, 6), sock
        # and the server still answers the patient
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200


@pytest.mark.integration
async def test_a_dripping_connection_does_not_delay_sigterm_beyond_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGEHOLDER_BODY_TIMEOUT_S", "120")  # only the grace may end it
    monkeypatch.setenv("PAGEHOLDER_SHUTDOWN_GRACE_S", "2")
    port = free_port()
    hung = asyncio.Event()
    handlers: list[asyncio.Task[object]] = []

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        hung.set()
        try:
            await asyncio.sleep(120)  # bounded: the test is over long before
        finally:
            writer.close()

    receiver = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{receiver.sockets[0].getsockname()[1]}/release"
    data = tmp_path / "data"
    try:
        with server_process(data, port, tmp_path / "server.log") as process:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30
            ) as api:
                body = {"name": "nic0", "release_url": url, "timeout_s": 30}
                assert (await api.post("/v1/holders", json=body)).status_code == 201
                held = await api.put(f"/v1/pages/{NORMAL}/hold", json={"holder": "nic0"})
                assert held.status_code == 201
                offline = asyncio.create_task(api.post("/v1/blocks/32/offline"))
                await asyncio.wait_for(hung.wait(), 10)
                _, drip = await asyncio.open_connection("127.0.0.1", port)
                drip.write(
                    b"POST /v1/holds/batch-set HTTP/1.1\r\nHost: r\r\n"
                    b"Content-Length: 100000\r\n\r\n"
                )
                stopped = time.monotonic()
                process.send_signal(signal.SIGTERM)
                for _ in range(200):  # a byte every 0.05 s, for at most 10 s
                    if process.poll() is not None:
                        break
                    with contextlib.suppress(ConnectionError):
                        drip.write(b" ")
                        await drip.drain()
                    await asyncio.sleep(0.05)
                code = await asyncio.to_thread(process.wait, 10)
                took = time.monotonic() - stopped
                drip.close()
                with contextlib.suppress(ConnectionError):
                    await drip.wait_closed()
                with contextlib.suppress(httpx.TransportError):
                    await offline
            assert code in (0, -signal.SIGTERM)
            assert took < 2 + 3, f"SIGTERM took {took:.1f} s"
        with server_process(data, port, tmp_path / "server.log"):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as api:
                page = (await api.get(f"/v1/pages/{NORMAL}")).json()
                assert page["held"] is True and page["holder"] == "nic0"  # the offline let go
                assert (await api.get("/v1/blocks/32")).json()["state"] == "online"
    finally:
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        receiver.close()
        await receiver.wait_closed()
