"""Client commands start fast: importing them loads neither FastAPI nor the server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules a client command must not import (the server and its framework).
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "pydantic_settings", "pageholder.service")


@pytest.mark.parametrize(
    "module", ["pageholder.cli.commands", "pageholder.cli.holders", "pageholder.cli.main"]
)
def test_client_commands_import_no_server(module: str) -> None:
    probe = (
        f"import sys, json, {module}\n"
        f"print(json.dumps([m for m in {SERVER_ONLY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == [], f"{module} imports {done.stdout.strip()}"


def test_a_client_command_run_imports_no_server() -> None:
    """Running ``owner --help`` through the entry point, not only importing it."""
    probe = (
        "import sys, json\n"
        "from pageholder.cli.main import main\n"
        "sys.argv = ['pageholder', 'owner', '1', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {SERVER_ONLY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
