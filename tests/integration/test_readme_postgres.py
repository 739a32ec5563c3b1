"""README's "Running two registries on PostgreSQL" works as printed: the block's lines
are read from README.md and run against the session's PostgreSQL (its URL and free
ports put in for the README's), the ``&`` lines as background registries."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .servers import Server, free_port, pageholder_command, server_env

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"
TOKEN = "readme-pg-admin-token-0123456789"


def block() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.S | re.M)
    (found,) = [b for b in blocks if b.startswith("export PAGEHOLDER_STORE=")]
    return [line for line in found.splitlines() if line.strip()]


def test_two_registries_as_the_readme_runs_them(tmp_path: Path, pg_url: str) -> None:
    ports = {"8000": str(free_port()), "8001": str(free_port())}
    env = server_env(None)
    servers: list[Server] = []
    answers: list[subprocess.CompletedProcess[str]] = []
    try:
        for line in block():
            for readme_port, port in ports.items():
                line = line.replace(f":{readme_port}", f":{port}").replace(
                    f"--port {readme_port}", f"--port {port}"
                )
            background = line.split("#")[0].rstrip().endswith("&")
            argv = shlex.split(line.split("#")[0].rstrip().rstrip("&"))
            if argv[0] == "export":
                name, _, value = argv[1].partition("=")
                env[name] = {"PAGEHOLDER_STORE": pg_url, "PAGEHOLDER_ADMIN_TOKEN": TOKEN}[name]
                continue
            assert argv[0] == ".venv/bin/pageholder", line
            command = [*pageholder_command(), *argv[1:]]
            if background:
                out, err = tmp_path / f"{len(servers)}.out", tmp_path / f"{len(servers)}.err"
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    process = subprocess.Popen(
                        command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env
                    )
                port = argv[argv.index("--port") + 1]
                servers.append(Server(process, command, int(port), out, err))
                servers[-1].wait_healthy(path="/readyz" if len(servers) == 1 else "/healthz")
                continue
            answers.append(
                subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env={**env, "PAGEHOLDER_TOKEN": TOKEN, "COLUMNS": "200"},
                    timeout=60,
                    check=False,
                )
            )
    finally:
        for server in servers:
            server.stop()
            print(server.output())
    leader, standby = answers
    assert leader.returncode == 0 and "Normal" in leader.stdout, leader
    assert standby.returncode != 0, standby
    refusal = standby.stdout + standby.stderr
    assert "not_leader" in refusal or "standby" in refusal, refusal
    assert f"127.0.0.1:{ports['8000']}" in refusal or "standby" in refusal, refusal
