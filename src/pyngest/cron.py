"""Placeholder cron schedules (being replaced by the full implementation on the expr branch)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError


class CronError(ValueError):
    pass


class Schedule:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip()
        self.zone: ZoneInfo | timezone = timezone.utc
        for prefix in ("CRON_TZ=", "TZ="):
            if text.startswith(prefix):
                zone, _, text = text[len(prefix):].partition(" ")
                try:
                    self.zone = ZoneInfo(zone)
                except Exception as exc:
                    raise CronError(f"unknown time zone {zone!r}") from exc
                text = text.strip()
        if text.startswith("@") or len(text.split()) != 5:
            raise CronError(f"{expression!r} is not a 5-field cron expression (minute hour day month weekday)")
        self.fields = text
        try:
            CronSim(text, datetime.now(self.zone))
        except CronSimError as exc:
            raise CronError(f"invalid cron expression {expression!r}: {exc}") from exc

    def next_after(self, ms: int) -> int:
        start = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(self.zone)
        nxt = next(CronSim(self.fields, start))
        return int(nxt.timestamp() * 1000)


def parse(expression: str) -> Schedule:
    return Schedule(expression)


def jitter_ms(seed: str, max_ms: int) -> int:
    if max_ms <= 1000:
        return max_ms
    h = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    return 1000 + h % (max_ms - 1000 + 1)
