"""Run benchmarks by name: ``python -m bench [NAME [ARG ...] ...]`` (no name: all of
them). Words after a name that are not names are that benchmark's arguments, e.g.
``python -m bench stall b c`` runs only the stall cases (b) and (c)."""

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
    "batch": "bench.bench_batch",
    "heads": "bench.bench_heads",
    "pg": "bench.bench_pg",
    "takeover": "bench.bench_takeover",
}


def main(argv: list[str]) -> int:
    runs: list[tuple[str, list[str]]] = [(name, []) for name in BENCHES] if not argv else []
    for word in argv:
        if word in BENCHES:
            runs.append((word, []))
        elif runs:
            runs[-1][1].append(word)
        else:
            print(f"unknown benchmark {word!r}; known: {', '.join(BENCHES)}")
            return 2
    for name, args in runs:
        module = importlib.import_module(BENCHES[name])
        if args:
            module.main(args)
        else:
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
