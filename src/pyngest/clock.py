"""The one clock. Everything time-based asks it, so tests can skip time instead of waiting.

``RealClock`` reads wall time and schedules callbacks on the running asyncio loop.
``TestClock`` only moves when told to (``advance``/``set``) and fires due callbacks as it does,
so an hour of debounce, sleeps or cron passes in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Unix time in milliseconds."""
        ...

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the event loop once the clock reaches ``when_ms``."""
        ...

    async def sleep_until(self, when_ms: int) -> None: ...


class RealClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (when_ms - self.now_ms()) / 1000)
        return loop.call_later(delay, callback)

    async def sleep_until(self, when_ms: int) -> None:
        delay = (when_ms - self.now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)


class _TestTimer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TestClock:
    """A clock that moves only when the test says so."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ms: int | None = None) -> None:
        self._now = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._timers: list[tuple[int, int, _TestTimer]] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self._now

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        timer = _TestTimer(when_ms, callback)
        if when_ms <= self._now:
            asyncio.get_running_loop().call_soon(self._fire, timer)
        else:
            heapq.heappush(self._timers, (when_ms, next(self._seq), timer))
        return timer

    @staticmethod
    def _fire(timer: _TestTimer) -> None:
        if not timer.cancelled:
            timer.cancelled = True
            timer.callback()

    async def sleep_until(self, when_ms: int) -> None:
        if when_ms <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        self.call_at(when_ms, wake)
        await fut

    def set(self, when_ms: int) -> None:
        """Move to ``when_ms`` (never backwards), firing every timer due on the way, in order."""
        while self._timers and self._timers[0][0] <= when_ms:
            when, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            self._fire(timer)
        self._now = max(self._now, when_ms)

    def advance(self, ms: int) -> None:
        self.set(self._now + ms)

    def has_timer_at(self, when_ms: int) -> bool:
        """Whether something sleeps until exactly ``when_ms`` (a test's sign that a loop has gone
        back to sleep)."""
        return any(when == when_ms and not timer.cancelled for when, _, timer in self._timers)

    def next_timer_ms(self) -> int | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None
