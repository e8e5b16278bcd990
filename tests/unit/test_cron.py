from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pyngest import cron
from pyngest.cron import CronError


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def iso(value: int | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days(fires: list[int]) -> list[str]:
    """Day-of-month of each fire time, in UTC."""
    return [datetime.fromtimestamp(f / 1000, UTC).strftime("%d") for f in fires]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2024-01-01T10:07:30+00:00", "2024-01-01T10:15:00Z"),
        ("0 12 * * 5", "2024-01-04T09:00:00+00:00", "2024-01-05T12:00:00Z"),  # a Thursday
        ("0 12 * * fri", "2024-01-05T12:00:00+00:00", "2024-01-12T12:00:00Z"),  # strictly after
        ("0 0 1 jan,JUL *", "2024-02-01T00:00:00+00:00", "2024-07-01T00:00:00Z"),
        ("5/20 * * * *", "2024-01-01T10:30:00+00:00", "2024-01-01T10:45:00Z"),  # 5-59/20
        ("1-10/3 * * * *", "2024-01-01T10:04:00+00:00", "2024-01-01T10:07:00Z"),
        ("0 9 ? * mon-fri", "2024-01-06T00:00:00+00:00", "2024-01-08T09:00:00Z"),  # skips weekend
        ("TZ=Europe/Paris 0 12 * * 5", "2024-01-04T00:00:00+00:00", "2024-01-05T11:00:00Z"),
        ("CRON_TZ=Europe/Paris 0 12 * * 5", "2024-07-04T00:00:00+00:00", "2024-07-05T10:00:00Z"),
        ("TZ=America/New_York 0 0 * * *", "2024-01-01T00:00:00+00:00", "2024-01-01T05:00:00Z"),
        ("0 0 30 2 *", "2024-01-01T00:00:00+00:00", None),  # February 30th never comes
    ],
)
def test_next_after(expression: str, after: str, expected: str | None) -> None:
    assert iso(cron.next_after(expression, ms(after))) == expected


def test_milliseconds_are_rounded_up_like_robfig() -> None:
    assert iso(cron.next_after("* * * * *", ms("2024-01-01T10:00:00.500+00:00"))) == (
        "2024-01-01T10:01:00Z"
    )


def test_both_day_fields_restricted_means_either() -> None:
    # robfig: the 13th of the month OR a Friday; "*/2" counts as restricted
    fires = cron.parse("0 0 13 * 5").fire_times(
        ms("2024-09-01T00:00:00+00:00"), ms("2024-09-30T00:00:00+00:00")
    )
    assert days(fires) == ["06", "13", "20", "27"]
    odd_or_monday = cron.parse("0 0 */2 * 1").fire_times(
        ms("2024-09-01T00:00:00+00:00"), ms("2024-09-10T00:00:00+00:00")
    )
    # odd days of the month, or Mondays (2024-09-02 and 09)
    assert days(odd_or_monday) == ["02", "03", "05", "07", "09"]
    # a "*" day of month means only the day of week counts
    mondays = cron.parse("0 0 * * 1").fire_times(
        ms("2024-09-01T00:00:00+00:00"), ms("2024-09-30T00:00:00+00:00")
    )
    assert days(mondays) == ["02", "09", "16", "23", "30"]


def test_fall_back_night_fires_once() -> None:
    # Europe/Paris leaves summer time on 2024-10-27: 02:00-03:00 happens twice. croniter
    # fires a 02:30 job in both; we fire it once, at the first 02:30 (CEST, 00:30Z).
    fires = cron.parse("TZ=Europe/Paris 30 2 * * *").fire_times(
        ms("2024-10-26T00:00:00+00:00"), ms("2024-10-28T23:00:00+00:00")
    )
    assert [iso(f) for f in fires] == [
        "2024-10-26T00:30:00Z",
        "2024-10-27T00:30:00Z",
        "2024-10-28T01:30:00Z",
    ]


def test_spring_forward_night_fires_when_clocks_jump() -> None:
    # Europe/Paris enters summer time on 2024-03-31: 02:00-03:00 does not exist, and the
    # 02:30 job runs at 03:00 CEST (01:00Z) that day, as Debian cron does.
    fires = cron.parse("TZ=Europe/Paris 30 2 * * *").fire_times(
        ms("2024-03-30T00:00:00+00:00"), ms("2024-04-01T23:00:00+00:00")
    )
    assert [iso(f) for f in fires] == [
        "2024-03-30T01:30:00Z",
        "2024-03-31T01:00:00Z",
        "2024-04-01T00:30:00Z",
    ]


def test_every_quarter_hour_keeps_real_time_across_fall_back() -> None:
    fires = cron.parse("TZ=Europe/Paris */30 * * * *").fire_times(
        ms("2024-10-27T00:00:00+00:00"), ms("2024-10-27T02:00:00+00:00")
    )
    assert len(fires) == 4 and fires == sorted(set(fires))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@hourly", "descriptors like '@hourly' are not accepted"),
        ("* * * *", "expected exactly 5 fields"),
        ("0 * * * * *", "found 6"),
        ("60 * * * *", "minute: 60 is above the maximum 59"),
        ("* 24 * * *", "hour: 24 is above the maximum 23"),
        ("* * 0 * *", "day of month: 0 is below the minimum 1"),
        ("* * * 13 *", "month: 13 is above the maximum 12"),
        ("* * * * 7", "day of week: 7 is above the maximum 6"),
        ("5-1 * * * *", "range 5-1 runs backwards"),
        ("*/0 * * * *", "step in '*/0' must be positive"),
        ("1/2/3 * * * *", "too many slashes"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("a * * * *", "'a' is not a number"),
        ("* * * foo *", "or a name like 'jan'"),
        ("TZ=Mars/Base 0 * * * *", "unknown time zone 'Mars/Base'"),
        ("TZ=Europe/Paris", "expected five fields after the time zone"),
        ("", "it is empty"),
    ],
)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("*", r"\*").replace("(", r"\(")):
        cron.validate(expression)
    assert issubclass(CronError, ValueError)


def test_parsed_fields() -> None:
    schedule = cron.parse("TZ=Asia/Tokyo 0,30 9-17/4 * JAN-mar sun")
    assert schedule.zone == "Asia/Tokyo"
    assert schedule.minutes == {0, 30}
    assert schedule.hours == {9, 13, 17}
    assert schedule.months == {1, 2, 3}
    assert schedule.days_of_week == {0}


def test_jitter_is_deterministic_and_bounded() -> None:
    seeds = [cron.cron_jitter_seed("fn-1", 1_700_000_000_000 + i * 60_000) for i in range(500)]
    values = [cron.jitter_ms(seed, 30_000) for seed in seeds]
    assert values == [cron.jitter_ms(seed, 30_000) for seed in seeds]
    assert all(1000 <= v <= 30_000 for v in values)
    assert len(set(values)) > 400  # spread, not one constant
    assert cron.jitter_ms("x", 0) == 0
    assert cron.jitter_ms("x", 500) == 500
