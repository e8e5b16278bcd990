"""The arithmetic of flow control (``pyngest.server.flow.limits``), on its own."""

from __future__ import annotations

import random

from pyngest.protocol.sync import PRIORITY_FACTOR_MAX
from pyngest.server.flow.limits import clamp_priority, gcra_reserve, key_hash, sliding_window_allows

MIN = 60_000


def test_gcra_allows_burst_at_once_then_one_per_interval() -> None:
    tat, starts = 0.0, []
    for _ in range(5):  # five runs arrive together: limit 4/min (15 s apart), burst 2
        at, tat = gcra_reserve(tat, 1_000, MIN, 4, 2)
        starts.append(at)
    assert starts == [1_000, 1_000, 16_000, 31_000, 46_000]


def test_gcra_default_burst_is_fully_smoothed_and_an_idle_key_recovers() -> None:
    at1, tat = gcra_reserve(0.0, 0, MIN, 2, 1)
    at2, tat = gcra_reserve(tat, 0, MIN, 2, 1)
    assert (at1, at2) == (0, 30_000)
    at3, _ = gcra_reserve(tat, 10 * MIN, MIN, 2, 1)  # long after: starts at once again
    assert at3 == 10 * MIN


def test_gcra_never_exceeds_its_bound_in_any_window() -> None:
    """Random arrivals: in any window of ``period`` at most limit + burst − 1 starts, never more
    than ``burst`` at one instant, and no start before its arrival."""
    rng = random.Random(7)
    for limit, burst in ((1, 1), (3, 1), (10, 2), (7, 5)):
        tat, arrivals, starts = 0.0, sorted(rng.randrange(20 * MIN) for _ in range(40 * limit)), []
        for t in arrivals:
            at, tat = gcra_reserve(tat, t, MIN, limit, burst)
            assert at >= t
            starts.append(at)
        assert max(starts.count(s) for s in starts) <= burst
        for s in starts:
            assert sum(1 for x in starts if s <= x < s + MIN) <= limit + burst - 1


def test_sliding_window_never_lets_more_than_limit_into_any_period() -> None:
    rng = random.Random(8)
    kept: list[int] = []
    allowed: list[int] = []
    for t in sorted(rng.randrange(30 * MIN) for _ in range(2_000)):
        ok, kept = sliding_window_allows(kept, t, MIN, 5)
        if ok:
            allowed.append(t)
    assert all(sum(1 for x in allowed if s <= x < s + MIN) <= 5 for s in allowed)
    assert 5 * 29 <= len(allowed) <= 5 * 31  # and it does let the limit through
    assert len(kept) <= 5  # the state stays bounded by the limit


def test_sliding_window_frees_a_slot_exactly_one_period_later() -> None:
    ok, kept = sliding_window_allows([], 0, MIN, 1)
    assert ok
    assert sliding_window_allows(kept, MIN - 1, MIN, 1)[0] is False
    assert sliding_window_allows(kept, MIN, MIN, 1)[0] is True


def test_priority_is_clamped_and_non_integers_count_as_zero() -> None:
    assert PRIORITY_FACTOR_MAX == 43_200  # PROTOCOL.md §2.3
    assert clamp_priority(120, PRIORITY_FACTOR_MAX) == 120
    assert clamp_priority(-600, PRIORITY_FACTOR_MAX) == -600
    assert clamp_priority(10**9, PRIORITY_FACTOR_MAX) == 43_200
    assert clamp_priority(-(10**9), PRIORITY_FACTOR_MAX) == -43_200
    for bad in (None, "120", True, [1], {"a": 1}):
        assert clamp_priority(bad, PRIORITY_FACTOR_MAX) == 0


def test_key_hash_is_stable_and_tells_values_apart() -> None:
    assert key_hash("a") == key_hash("a")
    assert len({key_hash(v) for v in ("1", 1, 1.5, None, "a" * 10_000)}) == 5
