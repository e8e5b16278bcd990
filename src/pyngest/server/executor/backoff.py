"""When to retry (PROTOCOL.md §5.2, §3.5)."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime

from pyngest.protocol.durations import parse_time_ms

# Upstream's TableBackoff, indexed by the failed attempt, plus 0-30 s of jitter.
TABLE_MS = [15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 2_400_000, 3_600_000, 7_200_000]
JITTER_MS = 30_000
MIN_RETRY_MS = 1_000
MAX_RETRY_MS = 24 * 3_600_000


def next_retry_ms(attempt: int, now_ms: int, *, fixed_interval_s: int | None = None,
                  rng: random.Random | None = None) -> int:
    """Due time of the retry after attempt ``attempt`` (0-based) failed."""
    if fixed_interval_s is not None:
        return now_ms + fixed_interval_s * 1000
    base = TABLE_MS[min(attempt, len(TABLE_MS) - 1)]
    jitter = (rng or random).randint(0, JITTER_MS)
    return now_ms + base + jitter


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """A Retry-After header as an absolute time, clamped to [1 s, 24 h] from now.

    Seven characters or fewer is a number of seconds; anything longer is a date (RFC 3339 or
    an HTTP date).
    """
    if not value:
        return None
    value = value.strip()
    at: int | None
    if len(value) <= 7:
        try:
            at = now_ms + int(float(value) * 1000)
        except ValueError:
            return None
    else:
        at = parse_time_ms(value)
        if at is None:
            try:
                at = int(parsedate_to_datetime(value).timestamp() * 1000)
            except (TypeError, ValueError):
                return None
    return max(now_ms + MIN_RETRY_MS, min(at, now_ms + MAX_RETRY_MS))
