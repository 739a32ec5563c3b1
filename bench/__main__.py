"""Run benchmarks by name: ``python -m bench [NAME ...]`` (no name: all of them)."""

from __future__ import annotations

import importlib
import sys

# NAME -> module with a main(); add a line here for a new benchmark.
BENCHES = {
    "radix": "bench.bench_radix",
    "http": "bench.bench_http",
    "offline": "bench.bench_offline",
    "store": "bench.bench_store",
    "webhook": "bench.bench_webhook",
    "console": "bench.bench_console",
    "peer": "bench.bench_peer",
    "cli": "bench.bench_cli",
    "bighost": "bench.bench_bighost",
    "events": "bench.bench_events",
    "leases": "bench.bench_leases",
    "stall": "bench.bench_stall",
    "heads": "bench.bench_heads",
    "pg": "bench.bench_pg",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [name for name in names if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    for name in names:
        importlib.import_module(BENCHES[name]).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
