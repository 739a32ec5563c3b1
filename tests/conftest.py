"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from .installed import Installed, build_wheel, install_wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The built wheel installed into a fresh venv, once per session."""
    base = tmp_path_factory.mktemp("installed")
    return install_wheel(build_wheel(base / "wheel"), base / "venv")
