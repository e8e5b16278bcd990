"""Cron schedules of function triggers (PROTOCOL.md §7).

Upstream validates a trigger's ``cron`` with robfig/cron's parser restricted to the five
standard fields (``minute hour day-of-month month day-of-week``), so descriptors such as
``@hourly`` are refused, and an optional ``TZ=Zone `` or ``CRON_TZ=Zone `` prefix picks the
time zone (UTC otherwise). We parse with the same rules and messages-worth of detail, then
compute fire times with cronsim, which handles daylight saving as Debian cron does: on a
fall-back night a 02:30 job runs once (the first 02:30); on a spring-forward night a job in
the skipped hour runs when the clocks jump (03:00).

robfig's day rule is kept: when both day fields are restricted (neither is ``*`` or ``?``),
a day matches if *either* matches; ``*/2`` counts as restricted. We give cronsim explicit
value lists so its own (Debian) reading of ``*/2`` cannot change that.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError


class CronError(ValueError):
    """A cron expression upstream would refuse; the message says which part and why."""


_MONTHS = {
    n: i
    for i, n in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_GO_INT = re.compile(r"[+-]?[0-9]+")
_STEP_ALL = re.compile(r"\*/([0-9]+)")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule. ``next_after`` gives fire times in unix milliseconds."""

    expression: str
    zone: str  # an IANA name; "UTC" when the expression has no TZ= prefix
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    _cronsim: str

    def next_after(self, ms: int) -> int | None:
        """The first fire time strictly after ``ms``, or None if the schedule never fires
        (e.g. ``0 0 30 2 *``, February 30th)."""
        start = datetime.fromtimestamp(ms / 1000, ZoneInfo(self.zone))
        try:
            fire = next(CronSim(self._cronsim, start))
        except (CronSimError, StopIteration):
            return None
        return int(fire.timestamp()) * 1000

    def fire_times(self, after_ms: int, until_ms: int) -> list[int]:
        """Every fire time in ``(after_ms, until_ms]``."""
        times: list[int] = []
        at = self.next_after(after_ms)
        while at is not None and at <= until_ms:
            times.append(at)
            at = self.next_after(at)
        return times


def parse(expression: str) -> CronSchedule:
    """Parse a trigger's cron expression; raises CronError with an actionable message."""
    if not isinstance(expression, str):
        raise CronError(f"a cron expression must be a string, not {type(expression).__name__}")
    spec = expression.strip()
    zone = "UTC"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        name, _, rest = spec.partition(" ")
        zone = name.split("=", 1)[1]
        spec = rest.strip()
        if not spec:
            raise _error(expression, f"expected five fields after the time zone {zone!r}")
        zone = _check_zone(expression, zone)
    if not spec:
        raise _error(expression, "it is empty")
    if spec.startswith("@"):
        raise _error(
            expression,
            f"descriptors like {spec.split()[0]!r} are not accepted in triggers; "
            "write the five fields (e.g. '0 * * * *' for @hourly)",
        )
    parts = spec.split()
    if len(parts) != 5:
        raise _error(
            expression,
            f"expected exactly 5 fields (minute hour day-of-month month day-of-week), "
            f"found {len(parts)}",
        )
    parsed = [_field(expression, text, *spec_) for text, spec_ in zip(parts, _FIELDS, strict=True)]
    (minutes, _), (hours, _), (doms, dom_star), (months, month_star), (dows, dow_star) = parsed
    cronsim_fields = [
        _clock_field(parts[0], parsed[0]),
        _clock_field(parts[1], parsed[1]),
        "*" if dom_star else _listing(doms),
        "*" if month_star else _listing(months),
        "*" if dow_star else _listing(dows),
    ]
    return CronSchedule(
        expression, zone, minutes, hours, doms, months, dows, " ".join(cronsim_fields)
    )


def validate(expression: str) -> None:
    """Raise CronError unless ``expression`` is a cron trigger upstream accepts."""
    parse(expression)


def next_after(expression: str, ms: int) -> int | None:
    """Shorthand for ``parse(expression).next_after(ms)``."""
    return parse(expression).next_after(ms)


def jitter_ms(seed: str, max_jitter_ms: int) -> int:
    """A deterministic delay in ``[1s, max_jitter_ms]`` for a fire time.

    Seed it with what identifies the firing (``cron_jitter_seed``), so every server computes
    the same delay and a retried schedule step lands on the same instant.
    """
    if max_jitter_ms <= 0:
        return 0
    low = min(1000, max_jitter_ms)
    digest = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big")
    return low + digest % (max_jitter_ms - low + 1)


def cron_jitter_seed(function_id: str, scheduled_ms: int) -> str:
    return f"{function_id}:{scheduled_ms}"


# ---------------------------------------------------------------------------------------------


def _error(expression: str, why: str) -> CronError:
    return CronError(f"{expression!r} isn't a valid cron schedule: {why}")


def _check_zone(expression: str, zone: str) -> str:
    if zone in ("", "Local"):
        return "UTC"  # Go: "" is UTC and "Local" the server's zone; our servers keep UTC
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _error(
            expression, f"unknown time zone {zone!r} (use an IANA name like 'Europe/Paris')"
        ) from None
    return zone


def _number(expression: str, text: str, what: str, names: dict[str, int] | None) -> int:
    if names is not None and text.lower() in names:
        return names[text.lower()]
    if not _GO_INT.fullmatch(text):
        hint = f" or a name like {next(iter(names))!r}" if names else ""
        raise _error(expression, f"{what}: {text!r} is not a number{hint}")
    value = int(text)
    if value < 0:
        raise _error(expression, f"{what}: negative number {value} is not allowed")
    return value


def _field(
    expression: str, text: str, what: str, low: int, high: int, names: dict[str, int] | None
) -> tuple[frozenset[int], bool]:
    """(values, star) for one field, with robfig's rules: ``*`` and ``?`` are "any" (and
    mark the field unrestricted unless stepped), ``N/s`` means ``N-max/s``."""
    values: set[int] = set()
    star = False
    for term in text.split(","):
        range_step = term.split("/")
        if len(range_step) > 2:
            raise _error(expression, f"{what}: too many slashes in {term!r}")
        low_high = range_step[0].split("-")
        unrestricted = low_high[0] in ("*", "?")
        if unrestricted:
            start, end = low, high
        else:
            start = _number(expression, low_high[0], what, names)
            if len(low_high) == 1:
                end = start
            elif len(low_high) == 2:
                end = _number(expression, low_high[1], what, names)
            else:
                raise _error(expression, f"{what}: too many hyphens in {term!r}")
        step = 1
        if len(range_step) == 2:
            step = _number(expression, range_step[1], what, None)
            if len(low_high) == 1:
                end = high
            if step > 1:
                unrestricted = False
        if start < low:
            raise _error(expression, f"{what}: {start} is below the minimum {low}")
        if end > high:
            raise _error(expression, f"{what}: {end} is above the maximum {high}")
        if start > end:
            raise _error(expression, f"{what}: range {start}-{end} runs backwards")
        if step == 0:
            raise _error(expression, f"{what}: the step in {term!r} must be positive")
        values.update(range(start, end + 1, step))
        star = star or unrestricted
    return frozenset(values), star


def _listing(values: frozenset[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _clock_field(text: str, parsed: tuple[frozenset[int], bool]) -> str:
    # cronsim decides how to cross daylight-saving changes from whether the minute and hour
    # fields start with "*": keep "*" and "*/n" as written, list everything else.
    values, star = parsed
    if star:
        return "*"
    step = _STEP_ALL.fullmatch(text)
    if step is not None and int(step.group(1)) > 0:
        return f"*/{int(step.group(1))}"
    return _listing(values)
