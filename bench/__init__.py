"""The benchmark harness (run on demand, never in CI): python -m bench.run"""
