"""What every benchmark writes: the machine line, a section header, RESULTS.md sections."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), {platform.python_implementation()}"
        f" {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def header(title: str, command: str, seconds: float, extra: str = "") -> str:
    return (
        f"## {title}\n\n"
        f"Command: `{command}` ({seconds:.0f} s)  \n"
        f"Machine: {machine()}{extra}  \n"
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n\n"
    )


def write_section(title: str, text: str) -> None:
    """Replace the ``## title`` section of RESULTS.md, or append it; nothing else changes."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new.rstrip("\n") + "\n")
