"""The torture test, short version (see torture.py; ``python -m bench.torture`` runs the full
one). ``TORTURE_RUNS`` / ``TORTURE_KILLS`` make it longer; ``CONFORMANCE_CRASH_SEED`` repeats a
run's random moments."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .torture import torture

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

RUNS = int(os.environ.get("TORTURE_RUNS", "100"))
KILLS = int(os.environ.get("TORTURE_KILLS", "5"))


@pytest.mark.timeout(1800)
def test_runs_survive_sigkills_and_faulty_apps(tmp_path: Path) -> None:
    seed = int(os.environ.get("CONFORMANCE_CRASH_SEED") or time.time_ns() % 1_000_000)
    figures = torture(tmp_path, RUNS, KILLS, seed)
    print(f"torture test (seed {seed}; rerun with CONFORMANCE_CRASH_SEED={seed}): {figures}")
