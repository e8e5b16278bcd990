"""The arithmetic of flow control, free of any I/O (so it is tested exhaustively on its own)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def key_hash(value: object) -> str:
    """A short stable digest of an evaluated key value (keys may be long user strings)."""
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def gcra_reserve(tat_ms: float, now_ms: int, period_ms: int, limit: int, burst: int) -> tuple[int, float]:
    """Throttle (GCRA, delaying rather than dropping).

    Runs may start ``limit`` per ``period``, evenly spaced, with up to ``burst`` starting at once.
    Given the theoretical arrival time ``tat_ms`` of the key, returns (start time for this run,
    the new TAT). The emission interval is period/limit; the burst tolerance (burst-1) intervals.
    """
    interval = period_ms / max(1, limit)
    tolerance = interval * (max(1, burst) - 1)
    start = max(float(now_ms), tat_ms - tolerance)
    new_tat = max(tat_ms, start) + interval
    return int(-(-start // 1)), new_tat  # round up: never start early


def sliding_window_allows(starts: Sequence[int], now_ms: int, period_ms: int, limit: int) -> tuple[bool, list[int]]:
    """Rate limit (dropping): at most ``limit`` starts in any window of ``period``.

    ``starts`` are earlier start times (oldest first). Returns (allowed, the times to keep).
    """
    recent = [t for t in starts if t > now_ms - period_ms]
    if len(recent) >= limit:
        return False, recent
    recent.append(now_ms)
    return True, recent


def clamp_priority(value: object, bound: int) -> int:
    """A priority expression's value in seconds; anything that isn't an integer counts as 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    v = int(value)
    return max(-bound, min(bound, v))
