"""Real ``pageholder serve`` processes on loopback, started and stopped by the tests.

``running_server(...)`` starts the installed ``pageholder`` command on a free port of
127.0.0.1, waits (bounded) until ``/readyz`` answers (its stored holds recovered), and on
exit sends SIGTERM, waits (bounded) and kills if it must: the process never outlives the
test, whatever happens.
Its stdout and stderr go to files; ``Server.output()`` reads them back, and the context
manager prints them on exit, which pytest shows only when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
#: How long a server may take to answer /healthz after it was started.
START_TIMEOUT_S = 20.0
#: How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: A port picked free may be taken by someone else before the server binds it.
START_ATTEMPTS = 3


def pageholder_command() -> list[str]:
    """The ``pageholder`` entry point installed next to this interpreter."""
    script = Path(sys.executable).parent / "pageholder"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pageholder.cli.main import main; main()"]


def server_env(admin_token: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without PAGEHOLDER_* settings, plus the admin token
    and ``extra`` (settings a test gives the server, e.g. PAGEHOLDER_WEBHOOK_...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEHOLDER_")}
    if admin_token is not None:
        env["PAGEHOLDER_ADMIN_TOKEN"] = admin_token
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One ``pageholder serve`` process and where its output goes."""

    process: subprocess.Popen[bytes]
    command: list[str]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        command = " ".join(self.command)
        return (
            f"--- {command} (exit {self.process.returncode}) stdout ---\n{self.stdout()}"
            f"--- stderr ---\n{self.stderr()}--- end ---\n"
        )

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S, path: str = "/healthz") -> None:
        """Return once ``path`` answers 200; raise if the process exits or time runs out.
        ``/healthz``: the process is up; ``/readyz``: it also recovered its stored holds."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, trust_env=False, timeout=1.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise ServerExited(self)
                with contextlib.suppress(httpx.TransportError):
                    if http.get(path).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {path} within {timeout_s} s\n{self.output()}")
                time.sleep(0.05)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM, wait, SIGKILL if it did not exit in time. True if SIGTERM sufficed."""
        if self.process.poll() is not None:
            return True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return False


class ServerExited(RuntimeError):
    def __init__(self, server: Server) -> None:
        super().__init__(f"pageholder serve exited while starting\n{server.output()}")
        self.server = server


def start_server(
    workdir: Path,
    *,
    data_dir: str = ":memory:",
    admin_token: str | None = None,
    args: Sequence[str] = (),
    pageholder: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    advertise: bool = False,
    ready_path: str = "/readyz",
) -> Server:
    """Start ``pageholder serve`` on a free port and wait until ``ready_path`` answers
    (/readyz: ready; /healthz: up, e.g. a standby). ``advertise``: ``--advertise-url``
    its own URL (a registry on PostgreSQL).

    Output goes to ``workdir/serve-<port>.{out,err}``. ``admin_token=None`` starts it
    without ``PAGEHOLDER_ADMIN_TOKEN`` (it then makes one up, or reads ``data_dir``'s).
    ``pageholder`` is the command to run (default: the one next to this interpreter).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        stdout_path = workdir / f"serve-{port}.out"
        stderr_path = workdir / f"serve-{port}.err"
        command = [
            *(pageholder or pageholder_command()),
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--data-dir",
            data_dir,
            *(["--advertise-url", f"http://{HOST}:{port}"] if advertise else []),
            *args,
        ]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=server_env(admin_token, env),
            )
        server = Server(process, command, port, stdout_path, stderr_path)
        try:
            server.wait_healthy(path=ready_path)
            return server
        except ServerExited:
            if "address already in use" not in server.stderr() or attempt + 1 == START_ATTEMPTS:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_server(
    workdir: Path,
    *,
    data_dir: str = ":memory:",
    admin_token: str | None = None,
    args: Sequence[str] = (),
    pageholder: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A healthy server for the ``with`` block; stopped (and its output printed) after.

    Leaving the block normally also asserts that SIGTERM alone stopped the server.
    """
    server = start_server(
        workdir,
        data_dir=data_dir,
        admin_token=admin_token,
        args=args,
        pageholder=pageholder,
        env=env,
    )
    try:
        yield server
    finally:
        graceful = server.stop()
        sys.stdout.write(server.output())
    assert graceful, f"pageholder serve did not exit within {STOP_TIMEOUT_S} s of SIGTERM"


def run_pageholder(
    *args: str, admin_token: str | None = None, timeout_s: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``pageholder ARGS`` to completion (bounded), capturing its output as text."""
    return subprocess.run(
        [*pageholder_command(), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=server_env(admin_token),
        timeout=timeout_s,
        check=False,
    )
