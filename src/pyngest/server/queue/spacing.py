"""Throttle spacing at hand-out time.

A throttled run's start is planned when its event is matched (GCRA, in flow control), so starts
are spaced by their due times. But due times are only a lower bound: when the server was busy,
paused or down, many planned starts become due at once and would all start together, well above
``burst``. The queue therefore runs the same GCRA again on the actual hand-out times and holds
back a start that comes too soon after the previous ones of its key.
"""

from __future__ import annotations

import math

_PRUNE_AT = 10_000  # keys tracked before stale ones are dropped


class Spacing:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}  # throttle key -> theoretical arrival time of its next start

    def __len__(self) -> int:
        return len(self._tat)

    def hold_ms(self, key: str, now_ms: int, interval_ms: float, burst: int) -> int:
        """0 and the start is counted if it may start now; else how long it must wait."""
        tat = self._tat.get(key, 0.0)
        earliest = tat - interval_ms * (max(1, burst) - 1)
        if now_ms < earliest:
            return max(1, math.ceil(earliest - now_ms))
        self._tat[key] = max(tat, float(now_ms)) + interval_ms
        if len(self._tat) > _PRUNE_AT:
            self._prune(now_ms)
        return 0

    def _prune(self, now_ms: int) -> None:
        # a key whose TAT has passed has a full burst again: forgetting it changes nothing
        for key in [k for k, tat in self._tat.items() if tat <= now_ms]:
            del self._tat[key]
