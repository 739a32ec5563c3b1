"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package, run by the
test session in a temporary directory, on 127.0.0.1 at a free port.

``find_binaries`` looks for ``initdb``/``pg_ctl``; if they are missing and we are root,
``apt-get install postgresql`` installs them (CI's fresh machine); otherwise the tests
that need PostgreSQL skip with the reason. As root the server runs as an unprivileged
user (``nobody``: PostgreSQL refuses to run as root) in a directory that user owns. One
server per session; each test gets a database of its own (``create_database``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

BIN_GLOB = "/usr/lib/postgresql/*/bin"
RUN_AS = "nobody"
INSTALL_TIMEOUT_S = 900


def find_binaries() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl."""
    found = [p for p in Path("/").glob(BIN_GLOB.lstrip("/")) if (p / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def install() -> Path | str:
    """The binaries' folder, installing Debian's package if root must; or why not."""
    found = find_binaries()
    if found is not None:
        return found
    if os.geteuid() != 0:
        return "PostgreSQL is not installed and installing it needs root"
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
        )
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}"
    return find_binaries() or "apt-get installed postgresql, but no initdb was found"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; ``start``/``stop``/``restart``."""

    def __init__(self, binaries: Path, *, fsync: bool = False) -> None:
        self.binaries = binaries
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="pageholder-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(RUN_AS)
            self.user = (entry.pw_uid, entry.pw_gid)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command: list[str] = [str(self.binaries / tool), *args]
        if self.user is not None:
            command = [
                "setpriv",
                f"--reuid={self.user[0]}",
                f"--regid={self.user[1]}",
                "--clear-groups",
                "--",
                *command,
            ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{self.tail()}")

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n--- server.log ---\n" + self.log.read_text(errors="replace")[-3000:]
        return ""

    def options(self) -> str:
        fsync = "on" if self.fsync else "off"
        return (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync={fsync}"
            " -c max_connections=200 -c shared_buffers=64MB"
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            self.options(),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def execute(
        self, url: str, sql: str, params: Sequence[object] = ()
    ) -> list[tuple[object, ...]]:
        with psycopg.connect(url, autocommit=True) as db:
            cursor = db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
