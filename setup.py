"""Packages and package data from pyproject's package-dir mapping (see the comment there).

Listing packages by hand once left ``pageholder.service.api.routes`` out of the wheel;
here every folder with an ``__init__.py`` under a mapped source folder is a package,
and every other file in it (``py.typed``, the console's static files) is its data.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
SKIP = {"__pycache__"}


def _mapping() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return mapping


def _packages(mapping: dict[str, str]) -> dict[str, Path]:
    """Every package name and its folder."""
    found: dict[str, Path] = {}
    for package, folder in mapping.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            if SKIP.intersection(init.parts):
                continue
            parts = init.parent.relative_to(ROOT / folder).parts
            found[".".join((package, *parts))] = init.parent
    return found


def _data(packages: dict[str, Path]) -> dict[str, list[str]]:
    """Each package's non-Python files, down into folders that are not packages."""
    folders = set(packages.values())
    data: dict[str, list[str]] = {}
    for package, folder in packages.items():
        files = []
        for path in sorted(folder.rglob("*")):
            skipped = path.suffix in (".py", ".pyc") or SKIP.intersection(path.parts)
            if skipped or not path.is_file():
                continue
            owner = next(p for p in path.parents if p in folders or p == ROOT)
            if owner == folder:
                files.append(path.relative_to(folder).as_posix())
        if files:
            data[package] = files
    return data


_MAPPING = _mapping()
_PACKAGES = _packages(_MAPPING)
setup(packages=sorted(_PACKAGES), package_dir=_MAPPING, package_data=_data(_PACKAGES))
