"""Benchmarks, apart from the tests: ``python -m bench [NAME ...]``.

Each ``bench_<name>.py`` has a ``main()`` that prints its table and updates its own
section of ``bench/RESULTS.md``. They are not run by pytest or CI.
"""
