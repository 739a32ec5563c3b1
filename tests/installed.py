"""What users install: the wheel built from this tree, installed (not editable) into a
fresh virtual environment, the way the Dockerfile does it.

``build_wheel`` runs ``pip wheel --no-deps``; ``install_wheel`` makes a venv and
``pip install``s the wheel there with its dependencies (from the package index, or from
pip's cache when it has them). Both are slow enough (10-60 s) that the tests share one
installation per session (the ``installed`` fixture in ``tests/conftest.py``).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: The source folders, as pyproject.toml maps them: folder -> package.
SOURCES = {
    "service": "pageholder.service",
    "client": "pageholder.client",
    "sim": "pageholder.sim",
    "cli": "pageholder.cli",
}


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the built wheel installed in it."""

    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def pageholder(self) -> Path:
        return self.bin / "pageholder"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def build_wheel(dest: Path, source: Path = ROOT) -> Path:
    """Build the project's wheel into ``dest``; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(dest),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dest.glob("pageholder-*.whl")
    return wheel


def install_wheel(wheel: Path, where: Path) -> Installed:
    """A fresh venv at ``where`` with ``wheel`` installed (not editable)."""
    venv.create(where, with_pip=True, clear=True)
    done = subprocess.run(
        [str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {wheel.name} failed:\n{done.stdout}\n{done.stderr}")
    return Installed(wheel, where)
