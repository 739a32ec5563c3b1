"""Dockerfile and docker-compose.yml say only what the CLI accepts."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from pageholder.cli.main import cli
from pageholder.service.settings import Settings

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
GROUP = typer.main.get_command(cli)


def invocations(command: list[str] | str) -> list[list[str]]:
    """The ``pageholder ...`` argument lists in a compose command (also inside sh -c)."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in re.split(r"&&|\|\||;", argv[2])]
    return [argv]


def parse(argv: list[str]) -> Any:
    """Parse like the real command line does (typer's click); raises on a bad option."""
    assert argv[0] == "pageholder", argv
    commands: dict[str, Any] = GROUP.commands  # type: ignore[attr-defined]
    assert argv[1] in commands, f"no command {argv[1]!r}"
    return commands[argv[1]].make_context(f"pageholder {argv[1]}", argv[2:])


def known_env() -> set[str]:
    names = {f"PAGEHOLDER_{field.upper()}" for field in Settings.model_fields}
    for command in GROUP.commands.values():  # type: ignore[attr-defined]
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
    return names


#: Services that run the pageholder image (the `ha` profile's postgres runs its own).
PAGEHOLDER_SERVICES = sorted(
    name for name, spec in COMPOSE["services"].items() if spec.get("image") == "pageholder:latest"
)


@pytest.mark.parametrize("service", PAGEHOLDER_SERVICES)
def test_compose_commands_are_ones_the_cli_accepts(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = COMPOSE["services"][service]
    for name, value in (spec.get("environment") or {}).items():
        monkeypatch.setenv(name, str(value))  # as the service runs: env vars fill options
    for argv in invocations(spec["command"]):
        parse(argv)


@pytest.mark.parametrize("service", PAGEHOLDER_SERVICES)
def test_compose_environment_is_known(service: str) -> None:
    environment = COMPOSE["services"][service].get("environment") or {}
    unknown = {k for k in environment if k.startswith("PAGEHOLDER_")} - known_env()
    assert not unknown


def test_the_dockerfile_runs_serve_as_compose_does() -> None:
    (cmd,) = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    argv = json.loads(cmd)
    context = parse(argv)
    assert argv[:2] == ["pageholder", "serve"]
    assert context.params["host"] == "0.0.0.0" and context.params["data_dir"] == "/data"
    assert COMPOSE["services"]["registry"]["command"] == argv
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert re.search(r'^VOLUME \["/data"\]', DOCKERFILE, re.M)
    assert re.search(r"^EXPOSE 8000$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    assert DOCKERFILE.count("FROM ") >= 2  # multi-stage


def test_the_ha_profile_is_two_registries_on_postgres_and_clients_of_both() -> None:
    services = COMPOSE["services"]
    ha = {name for name, spec in services.items() if "ha" in (spec.get("profiles") or [])}
    assert {"postgres", "registry-a", "registry-b", "ha-offliner"} <= ha
    assert not {"registry", "nic0", "gpu0", "rdma0", "offliner"} & ha  # the default is as it was
    assert set(PAGEHOLDER_SERVICES) | {"postgres"} == set(services)
    for name in ("registry-a", "registry-b"):
        context = parse(services[name]["command"])
        assert context.params["advertise_url"] == f"http://{name}:8000"
        assert services[name]["environment"]["PAGEHOLDER_STORE"].startswith("postgresql://")
    urls = {"http://registry-a:8000", "http://registry-b:8000"}
    for name in ha - {"postgres", "registry-a", "registry-b"}:
        assert set(services[name]["environment"]["PAGEHOLDER_URL"].split(",")) == urls, name
    postgres = (ROOT / "deploy" / "postgres" / "Dockerfile").read_text()
    assert postgres.startswith("#") and re.search(r"^FROM debian:bookworm-slim$", postgres, re.M)
    assert re.search(r"^USER postgres$", postgres, re.M) and "HEALTHCHECK" in postgres


def test_a_wrong_flag_would_be_caught() -> None:
    with pytest.raises(Exception, match="No such option"):
        parse(["pageholder", "serve", "--hots", "0.0.0.0"])
    with pytest.raises(Exception, match="No such option"):
        parse(["pageholder", "offline", "40", "--deadlin", "3"])
