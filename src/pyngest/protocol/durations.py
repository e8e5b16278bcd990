"""Duration strings as they cross the wire (PROTOCOL.md §2.3, §4.2).

Upstream parses with "str2duration": Go's time.ParseDuration plus ``d`` (day) and ``w`` (week)
units, e.g. ``30s``, ``1h30m``, ``2d``, ``1.5h``, ``100ms``. Values are handled in milliseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNIT_MS: dict[str, float] = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "μs": 1e-3,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
    "w": 604_800_000.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")


class DurationError(ValueError):
    pass


def parse_ms(text: str, *, allow_days: bool = True) -> int:
    """Parse a duration string into whole milliseconds (rounded down)."""
    s = text.strip()
    if not s:
        raise DurationError("empty duration")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        unit = m.group(2)
        if not allow_days and unit in ("d", "w"):
            raise DurationError(f"invalid duration {text!r}: unit {unit!r} is not allowed here")
        total += float(m.group(1)) * _UNIT_MS[unit]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise DurationError(
            f"invalid duration {text!r}: expected a number and a unit, like '30s', '5m', '1h30m' or '2d'"
        )
    return sign * int(total)


def format_ms(ms: int) -> str:
    """Render milliseconds with the largest unit that divides evenly (as the Python SDK does)."""
    if ms <= 0:
        return "0s"
    for unit, suffix in ((604_800_000, "w"), (86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")):
        if ms % unit == 0:
            return f"{ms // unit}{suffix}"
    return f"{ms}ms"


def parse_time_ms(text: str) -> int | None:
    """Parse an RFC 3339 / ISO 8601 timestamp into unix milliseconds, or None if it isn't one."""
    s = text.strip()
    if len(s) < 10:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def parse_until_or_duration(text: str, now_ms: int) -> int:
    """A Sleep/WaitForEvent timeout: a date (ISO) or a duration. Returns the absolute unix ms."""
    at = parse_time_ms(text) if len(text) >= 10 else None
    if at is not None:
        return at
    return now_ms + parse_ms(text)


def iso_ms(ms: int) -> str:
    """Unix ms → ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def rfc3339_s(ms: int) -> str:
    """Unix ms → ``YYYY-MM-DDTHH:MM:SSZ`` (seconds precision, as upstream's cron ids)."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
