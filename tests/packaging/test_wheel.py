"""The built wheel holds every module, ``py.typed`` and data file of the source folders.

A package left out of pyproject's mapping once shipped a wheel whose ``pageholder``
crashed on its first command; ``missing_from`` is the check, and the last test shows
that it catches exactly that.
"""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest

from ..installed import ROOT, SOURCES, Installed, build_wheel

pytestmark = pytest.mark.integration


def shipped_files(folder: Path) -> list[Path]:
    """What a user's install needs from a source folder: every file but caches."""
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def missing_from(wheel: Path, root: Path = ROOT) -> list[str]:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for folder, package in SOURCES.items():
        for path in shipped_files(root / folder):
            want = package.replace(".", "/") + "/" + path.relative_to(root / folder).as_posix()
            if want not in names:
                missing.append(want)
    return missing


def test_the_source_folders_are_the_mapping_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    assert {folder: package for package, folder in mapping.items()} == SOURCES


def test_the_wheel_holds_every_module_typed_marker_and_data_file(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert missing_from(installed.wheel) == []
    for package in SOURCES.values():
        assert package.replace(".", "/") + "/py.typed" in names
    # no stray top-level packages: only pageholder/ and its metadata
    assert {n.split("/")[0] for n in names} <= {
        "pageholder",
        *(n.split("/")[0] for n in names if ".dist-info/" in n),
    }


def test_a_package_left_out_of_the_mapping_is_caught(tmp_path: Path) -> None:
    scratch = tmp_path / "tree"
    shutil.copytree(
        ROOT,
        scratch,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "build", "*.egg-info", "tests", "bench"
        ),
    )
    pyproject = scratch / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pageholder.sim" = "sim"\n', ""))
    wheel = build_wheel(tmp_path / "wheel", scratch)
    missing = missing_from(wheel, scratch)
    assert "pageholder/sim/fleet.py" in missing
    assert all(m.startswith("pageholder/sim/") for m in missing)
