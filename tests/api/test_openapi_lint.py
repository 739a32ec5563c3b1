"""The committed OpenAPI document passes Spectral (``spectral:oas``) and Redocly
(``recommended``), both from npm, except what ``openapi/lint-allow.txt`` accepts with a
reason.

The linters are installed by this module, with ``npm install --prefix`` into a folder of
the virtualenv (kept between runs, so only the first run downloads them). Without npm,
or when the install fails (no registry in reach), the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
ALLOWED = ROOT / "openapi" / "lint-allow.txt"
#: Pinned, so that a new rule upstream cannot fail a build nobody changed.
PACKAGES = {"@stoplight/spectral-cli": "6.16.3", "@redocly/cli": "2.77.0"}
INSTALL_TIMEOUT_S = 600
LINT_TIMEOUT_S = 120
#: No telemetry, no update checks: the linters talk to nobody.
QUIET = {
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_UPDATE_NOTIFIER": "1",
    "npm_config_update_notifier": "false",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
}

Finding = tuple[str, str, str]  # (tool, rule, JSON pointer)


def _installed(prefix: Path) -> bool:
    for name, wanted in PACKAGES.items():
        manifest = prefix / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text())["version"] != wanted:
            return False
    return True


@pytest.fixture(scope="module")
def linters() -> Iterator[Path]:
    """``node_modules/.bin`` with spectral and redocly, installed on first use."""
    prefix = Path(sys.prefix) / "openapi-lint"
    if not _installed(prefix):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: the OpenAPI lint needs node and npm")
        prefix.mkdir(parents=True, exist_ok=True)
        command = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-save",
            "--loglevel=error",
            *(f"{name}@{version}" for name, version in PACKAGES.items()),
        ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                env={**os.environ, **QUIET},
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm install of the OpenAPI linters took over {INSTALL_TIMEOUT_S} s")
        if done.returncode != 0 or not _installed(prefix):
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"npm install of the OpenAPI linters failed: {reason}")
    yield prefix / "node_modules" / ".bin"


def _pointer(path: list[object]) -> str:
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=LINT_TIMEOUT_S,
        env={**os.environ, **QUIET},
        cwd=ROOT,
        check=False,
    )


def allowed() -> dict[Finding, str]:
    """The accepted findings with their reasons; a line without a reason is an error."""
    entries: dict[Finding, str] = {}
    for number, line in enumerate(ALLOWED.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        finding, sep, reason = line.partition(" -- ")
        parts = finding.split()
        assert sep and reason.strip() and len(parts) == 3, f"lint-allow.txt:{number}: {line!r}"
        entries[(parts[0], parts[1], parts[2])] = reason.strip()
    return entries


def spectral(bin_dir: Path, tmp_path: Path) -> set[Finding]:
    ruleset = tmp_path / ".spectral.yaml"
    ruleset.write_text('extends: ["spectral:oas"]\n')
    report = tmp_path / "spectral.json"
    done = _run(
        [
            str(bin_dir / "spectral"),
            "lint",
            "--ruleset",
            str(ruleset),
            "--format",
            "json",
            "--output",
            str(report),
            "--fail-severity",
            "error",
            str(SPEC),
        ]
    )
    assert report.is_file(), done.stdout + done.stderr
    results = json.loads(report.read_text())
    # severity 0 = error, 1 = warning (2 info and 3 hint are not findings)
    return {("spectral", r["code"], _pointer(r["path"])) for r in results if r["severity"] <= 1}


def redocly(bin_dir: Path) -> set[Finding]:
    done = _run(
        [
            str(bin_dir / "redocly"),
            "lint",
            "--extends",
            "recommended",
            "--format",
            "json",
            str(SPEC),
        ]
    )
    report = json.loads(done.stdout)
    return {
        ("redocly", p["ruleId"], p["location"][0]["pointer"])
        for p in report["problems"]
        if p["severity"] in ("error", "warn")
    }


def _check(found: set[Finding], tool: str) -> None:
    accepted = {f for f in allowed() if f[0] == tool}
    unexpected = sorted(found - accepted)
    stale = sorted(accepted - found)
    assert not unexpected, f"{tool} findings not in openapi/lint-allow.txt: {unexpected}"
    assert not stale, f"lines of openapi/lint-allow.txt that {tool} no longer finds: {stale}"


def test_the_allow_list_gives_a_reason_for_each_line() -> None:
    assert all(len(reason) > 20 for reason in allowed().values())


def test_spectral_oas(linters: Path, tmp_path: Path) -> None:
    _check(spectral(linters, tmp_path), "spectral")


def test_redocly_recommended(linters: Path) -> None:
    _check(redocly(linters), "redocly")
