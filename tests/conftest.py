"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .installed import Installed, build_wheel, install_wheel
from .postgres import PostgresServer, install


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The built wheel installed into a fresh venv, once per session."""
    base = tmp_path_factory.mktemp("installed")
    return install_wheel(build_wheel(base / "wheel"), base / "venv")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (installed first on a fresh machine)."""
    binaries = install()
    if isinstance(binaries, str):
        pytest.skip(binaries)
    server = PostgresServer(binaries)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database()
