"""The benchmark harness: systems under test, the load generator and the scenarios.

``bench/run.py`` is the one command; see ``docs/benchmarks.md``. Nothing here runs in CI.
"""
