"""How fast a client command starts: ``pageholder owner 1 --help`` and real commands
against a real ``pageholder serve``, beside the interpreter's own start (the baseline,
measured in the same run) and the import of the server a client command no longer loads.

Each row runs its command RUNS times after WARMUP runs (a timed loop of subprocesses).
The table gives the wall-clock median and slowest tenth, and the median CPU time (user +
system of the child) with its multiple of the baseline's. On a machine shared with other
work, wall time includes waiting for a CPU (the baseline's wall time shows how much), so
the target, a client command under 0.3 s, is judged on CPU time, and on wall time too.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._report import header, write_section

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))  # tests.integration.servers: the real-server helpers

from tests.integration.servers import pageholder_command, running_server  # noqa: E402

RUNS = 20
WARMUP = 3
TARGET_S = 0.3
TOKEN = "bench-cli-admin-token-0123456789"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each run (after the warm-up runs)."""
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(WARMUP + RUNS):
        cpu = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{argv}: exit {done.returncode}: {done.stderr.decode()}")
        if i >= WARMUP:
            walls.append(elapsed)
            cpus.append(_children_cpu() - cpu)
    return walls, cpus


def p90(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.9) - 1]


def main() -> None:
    started = time.monotonic()
    python = [sys.executable]
    cmd = pageholder_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEHOLDER_")}
    with running_server(Path("/tmp") / f"bench-cli-{os.getpid()}", admin_token=TOKEN) as server:
        client_env = {**env, "PAGEHOLDER_URL": server.url, "PAGEHOLDER_TOKEN": TOKEN}
        setup = [
            [*cmd, "holder", "create", "bench0"],
            [*cmd, "hold", "1048576", "--holder", "bench0", "--order", "9"],
        ]
        for argv in setup:
            subprocess.run(argv, env=client_env, capture_output=True, timeout=60, check=True)
        rows = [
            ("baseline: `python -c pass`", [*python, "-c", "pass"], env, False),
            ("`pageholder owner 1 --help`", [*cmd, "owner", "1", "--help"], env, True),
            (
                "`pageholder owner 1048600` (real server)",
                [*cmd, "owner", "1048600"],
                client_env,
                True,
            ),
            (
                "`pageholder holders --json` (real server)",
                [*cmd, "holders", "--json"],
                client_env,
                True,
            ),
            (
                "`pageholder blocks --held` (real server)",
                [*cmd, "blocks", "--held"],
                client_env,
                True,
            ),
            (
                "for scale: `python -c 'import pageholder.service.api'` (not loaded any more)",
                [*python, "-c", "import pageholder.service.api"],
                env,
                False,
            ),
        ]
        measured = [(label, timed(argv, e), judged) for label, argv, e, judged in rows]
    base = statistics.median(measured[0][1][1])
    lines = [
        "| command | wall median | wall p90 | CPU median | CPU vs baseline | target | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, (walls, cpus), judged in measured:
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        verdict = ""
        if judged:
            verdict = "pass" if cpu < TARGET_S else "MISS"
            verdict += " (CPU); " + ("pass" if wall < TARGET_S else "MISS") + " (wall)"
        target = f"< {TARGET_S} s" if judged else ""
        lines.append(
            f"| {label} | {wall * 1000:.0f} ms | {p90(walls) * 1000:.0f} ms | "
            f"{cpu * 1000:.0f} ms | {cpu / base:.1f}x | {target} | {verdict} |"
        )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text = (
        header("Client command start", "python -m bench cli", time.monotonic() - started)
        + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip()
        + f" {RUNS} runs per row; load average at the end: {load} on {os.cpu_count()} CPUs.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    write_section("Client command start", text)
