"""Throttle, rate limit, debounce, priority and restarts on simulated time (see ``sim.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.accuracy import sim


async def test_throttle_rate_within_5_percent_and_never_above_burst(tmp_path: Path) -> None:
    f = await sim.throttle(tmp_path, windows=60)
    assert f["rate_error_pct"] <= 5, f
    assert f["max_at_once"] <= f["burst"], f  # also after a stall with several starts due
    assert f["max_per_window"] <= f["max_per_window_allowed"], f


async def test_rate_limit_never_exceeded_in_any_period(tmp_path: Path) -> None:
    f = await sim.rate_limit(tmp_path, periods=20)
    assert f["max_in_any_period"] == f["limit"], f  # reached, never passed
    assert f["runs"] < f["events"], f


def test_max_in_any_window_counts_half_open_windows() -> None:
    assert sim.max_in_any_window([0, 10, 59, 60, 61], 60) == 4
    assert sim.max_in_any_window([0, 60, 120], 60) == 1
    assert sim.max_in_any_window([], 60) == 0


async def test_debounce_one_run_per_key_with_the_last_event(tmp_path: Path) -> None:
    f = await sim.debounce(tmp_path, keys=40)
    assert (f["runs_per_key_min"], f["runs_per_key_max"]) == (1, 1), f
    assert f["wrong_event_or_time"] == 0, f
    assert f["timeout_runs"] >= 2 * f["timeout_keys"], f  # the timeout cut a minute of events
    assert f["timeout_max_wait_s"] <= f["timeout_s"], f


async def test_higher_priority_backlog_drains_first(tmp_path: Path) -> None:
    f = await sim.priority(tmp_path, runs=150)
    assert f["started"] == f["runs"], f
    assert f["inversions"] == 0, f
    assert f["negative_started_before_delay"] == 0 and f["negative_delay_s"] >= 60, f


async def test_idempotency_singleton_and_throttle_hold_across_a_restart(tmp_path: Path) -> None:
    f = await sim.restart(tmp_path)
    assert f == {
        "idempotent_runs_after_restart": 0,
        "singleton_runs_after_restart": 0,
        "singleton_other_key_runs": 1,
        "throttle_starts_s": [0.0, 60.0, 120.0, 180.0],
    }
