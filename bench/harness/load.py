"""The load generator: the same closed and open loops drive every system.

A *closed loop* keeps ``concurrency`` runs in flight: each worker triggers a run, awaits its
completion, and starts the next; throughput is completions per second. An *open loop* starts
runs at a fixed arrival rate whatever happens to earlier ones, and times each from its
scheduled start, so a system that falls behind shows it in its latencies (no coordinated
omission).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Trigger = Callable[[int], Awaitable[None]]  # start run number i and return once it has completed


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0
    first_error: str = ""
    offered_rate: float | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "completed": self.completed,
            "errors": self.errors,
            "seconds": round(self.elapsed_s, 3),
            "per_s": round(self.throughput, 1),
            "p50_ms": round(pct(self.latencies_ms, 50), 3),
            "p90_ms": round(pct(self.latencies_ms, 90), 3),
            "p99_ms": round(pct(self.latencies_ms, 99), 3),
            "max_ms": round(max(self.latencies_ms), 3) if self.latencies_ms else math.nan,
        }
        if self.offered_rate is not None:
            out["offered_per_s"] = self.offered_rate
        if self.first_error:
            out["first_error"] = self.first_error[:300]
        return out


_counter = itertools.count(1)


def next_ids(n: int) -> list[int]:
    """Run numbers unique within this process, so runs of different phases never collide."""
    return [next(_counter) for _ in range(n)]


async def closed_loop(trigger: Trigger, *, concurrency: int, runs: int | None = None,
                      seconds: float | None = None, timeout_s: float = 60.0) -> LoadResult:
    """``concurrency`` workers back to back, until ``runs`` complete or ``seconds`` pass."""
    assert runs is not None or seconds is not None
    result = LoadResult()
    remaining = [runs if runs is not None else math.inf]
    deadline = [math.inf]

    async def worker() -> None:
        while remaining[0] > 0 and time.perf_counter() < deadline[0]:
            remaining[0] -= 1
            (i,) = next_ids(1)
            start = time.perf_counter()
            try:
                await asyncio.wait_for(trigger(i), timeout_s)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                continue
            result.latencies_ms.append((time.perf_counter() - start) * 1000)

    t0 = time.perf_counter()
    if seconds is not None:
        deadline[0] = t0 + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - t0
    return result


async def open_loop(trigger: Trigger, *, rate: float, seconds: float,
                    timeout_s: float = 60.0, max_in_flight: int = 20_000) -> LoadResult:
    """Start a run every ``1/rate`` s for ``seconds``; each is timed from its scheduled start."""
    result = LoadResult(offered_rate=rate)
    tasks: set[asyncio.Task[None]] = set()
    n = int(rate * seconds)
    t0 = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        try:
            await asyncio.wait_for(trigger(i), timeout_s)
        except Exception as exc:  # noqa: BLE001
            result.errors += 1
            result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
            return
        result.latencies_ms.append((time.perf_counter() - scheduled) * 1000)

    for k, i in enumerate(next_ids(n)):
        scheduled = t0 + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            result.errors += 1
            result.first_error = result.first_error or f"more than {max_in_flight} runs in flight"
            continue
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - t0
    return result
