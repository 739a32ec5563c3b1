"""The import direction of DESIGN.md, proven on the source.

core      imports nothing of ours outside core, and no framework or I/O library
storage, webhooks, api      import core (and the service's settings)
client    imports nothing of ours
sim       imports client
cli       imports anything
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..installed import ROOT

#: layer (a source folder, or a folder of service/) -> the layers of ours it may import
ALLOWED: dict[str, set[str]] = {
    "service/core": {"service/core"},
    "service/storage": {"service/core", "service/storage"},
    "service/webhooks": {"service/core", "service/webhooks"},
    "service/api": {
        "service/core",
        "service/storage",
        "service/webhooks",
        "service/api",
        "service",
    },
    "service": {"service"},  # service/settings.py and the package itself
    "client": {"client"},
    "sim": {"client", "sim"},
    "cli": {
        "service/core",
        "service/storage",
        "service/webhooks",
        "service/api",
        "service",
        "client",
        "sim",
        "cli",
    },
}
#: what the core must not import at all (it does no I/O and knows no framework)
CORE_FORBIDDEN = ("fastapi", "starlette", "pydantic", "httpx", "sqlite3", "uvicorn", "socket")


def layer_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pageholder" or len(parts) < 2:
        return None
    if (
        parts[1] == "service"
        and len(parts) > 2
        and parts[2] in ("core", "storage", "webhooks", "api")
    ):
        return f"service/{parts[2]}"
    return parts[1]


def layer_of_file(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "service" and len(rel) > 2:
        return f"service/{rel[1]}"
    return rel[0]


def source_files() -> list[Path]:
    return [
        p
        for folder in ("service", "client", "sim", "cli")
        for p in sorted((ROOT / folder).rglob("*.py"))
    ]


def test_every_import_goes_the_way_the_layers_allow() -> None:
    wrong = []
    for path in source_files():
        layer = layer_of_file(path)
        for module in imports_of_resolved(path):
            target = layer_of_module(module)
            if target is not None and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} ({layer}) imports {module}")
            if layer == "service/core" and module.split(".")[0] in CORE_FORBIDDEN:
                wrong.append(f"{path.relative_to(ROOT)} (core) imports {module}")
    assert wrong == []


def imports_of_resolved(path: Path) -> list[str]:
    """Imports with relative ones resolved against the file's package."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = ["pageholder", *rel[:-1]]
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        (
            "pageholder.service.core.registry",
            ("fastapi", "httpx", "sqlite3", "starlette", "pydantic"),
        ),
        ("pageholder.service.core.offline", ("fastapi", "httpx", "sqlite3")),
        ("pageholder.sim", ("fastapi", "pageholder.service")),
        ("pageholder.client", ("fastapi", "pageholder.service")),
    ],
)
def test_importing_a_layer_loads_nothing_it_must_not(module: str, absent: tuple[str, ...]) -> None:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert [
        m
        for m in loaded
        if m.split(".")[0] in absent or any(m.startswith(a + ".") or m == a for a in absent)
    ] == []


def test_journal_ops_are_built_only_in_journal_py() -> None:
    ops = {"HoldOp", "UnholdOp", "HolderOp", "UnholderOp", "BlockOp", "UnblockOp"}
    built = []
    for path in (ROOT / "service").rglob("*.py"):
        if path.name == "journal.py" and path.parent.name == "core":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ops
            ):
                built.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert built == []
