"""The README's terminal walk-through works as printed, line by line, against a real
``pageholder serve``: the block is read from README.md, so the test follows the README."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from .servers import pageholder_command, running_server, server_env

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"
TOKEN = "readme-admin-token-0123456789"
PLACEHOLDER = "<admin token>"
COMMAND = ".venv/bin/pageholder"


def walk_through() -> list[str]:
    """The lines of the ``sh`` block that starts with ``export PAGEHOLDER_URL=``."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.S | re.M)
    (block,) = [b for b in blocks if b.startswith("export PAGEHOLDER_URL=")]
    return [line for line in block.splitlines() if line.strip()]


def test_the_walk_through_creates_its_holder_before_using_it() -> None:
    lines = walk_through()
    first_use = next(i for i, line in enumerate(lines) if "--holder nic0" in line)
    created = next(i for i, line in enumerate(lines) if "holder create nic0" in line)
    assert created < first_use


def test_every_line_of_the_walk_through_works(tmp_path: Path) -> None:
    with running_server(tmp_path, admin_token=TOKEN) as server:
        env = server_env(None)
        outputs: list[str] = []
        for line in walk_through():
            argv = shlex.split(line, comments=True)
            if argv[0] == "export":
                for assignment in argv[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = {
                        "PAGEHOLDER_URL": server.url,
                        "PAGEHOLDER_TOKEN": TOKEN,
                    }.get(name, value)
                assert env.get("PAGEHOLDER_TOKEN") == TOKEN and PLACEHOLDER in line
                continue
            assert argv[0] == COMMAND, line
            done = subprocess.run(
                [*pageholder_command(), *argv[1:]],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env={**env, "COLUMNS": "200"},
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
            assert done.stdout.strip(), f"{line} printed nothing"
            outputs.append(done.stdout)
    # What the comments promise, in the order they promise it.
    text = "\n".join(outputs)
    assert re.search(r"^token: +pht_", text, re.M)
    assert "pfn 1048600 is held by nic0" in text
    assert "no_release_handler" in text  # the refused offline says why
    assert re.search(r"│ 32 +│ offline", text)
