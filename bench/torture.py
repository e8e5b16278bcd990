"""The torture test at full size (issue 13): 1,000 runs of every kind (steps, sleeps, waits,
retries, concurrency, throttle, debounce) while the server is SIGKILLed 20 times at random
moments, and a hung app, one answering garbage and one resetting connections get their share.

    python -m bench.torture [--runs 1000] [--kills 20] [--seed N]
    PYNGEST_TEST_BACKEND=postgres python -m bench.torture   # on PostgreSQL + Redis

The rules checked are those of tests/conformance/torture.py; any violation fails the command.
Prints the runs, the kills, the time until every run ended, and per app what was checked.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests import backends
from tests.conformance.torture import torture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        try:
            figures = torture(Path(tmp), args.runs, args.kills, seed)
        finally:
            asyncio.run(backends.drop_created())  # the PostgreSQL schema it made, if any
    print(f"torture on {backends.BACKEND} (seed {seed}): {figures}")


if __name__ == "__main__":
    main()
