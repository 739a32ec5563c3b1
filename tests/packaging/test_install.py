"""The wheel as a user installs it: a fresh venv, ``pip install <wheel>``, then the
commands README tells people to type."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from ..installed import Installed
from ..integration.servers import running_server, server_env

pytestmark = pytest.mark.integration


def run(
    installed: Installed, *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed.pageholder), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=server_env(None),
        cwd="/",  # nowhere near this source tree
        timeout=timeout_s,
        check=False,
    )


def test_help_and_version(installed: Installed) -> None:
    helped = run(installed, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "demo", "simulate", "holders", "offline"):
        assert command in helped.stdout
    version = run(installed, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "pageholder 0.1.0"


def test_the_installed_package_is_not_this_tree(installed: Installed) -> None:
    where = subprocess.run(
        [
            str(installed.python),
            "-c",
            "import pageholder.service; print(pageholder.service.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed.venv)), where


def test_serve_from_the_wheel_answers_health_docs_and_the_console(
    installed: Installed, tmp_path: Path
) -> None:
    with (
        running_server(
            tmp_path, data_dir=str(tmp_path / "data"), pageholder=[str(installed.pageholder)]
        ) as server,
        httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http,
    ):
        assert http.get("/healthz").status_code == 200
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert http.get("/openapi.json").json()["info"]["title"] == "pageholder"
        console = http.get("/ui")
        assert console.status_code == 200 and "console.js" in console.text
        assert http.get("/ui/static/console.js").status_code == 200


def test_demo_from_the_wheel(installed: Installed) -> None:
    done = run(installed, "demo", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary" in done.stdout
