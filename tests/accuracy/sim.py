"""Flow-control scenarios on simulated time: the server in this process on a test clock, a
scripted app over loopback HTTP, so hours of throttle, rate-limit and debounce windows pass in
seconds. Each scenario returns its figures (plain JSON values); ``tests/accuracy`` runs them at
a small size and asserts, ``bench/flow_accuracy.py`` at full size and reports.

The loop of every scenario is the same: move the clock, wait until the queue has done all that
is due (``Scheduler.idle``), send the events whose time has come, wait again. The app records
the test clock's time of each request it gets, which is when the server started that run.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyngest.protocol.step_ids import hash_step_id
from tests.integration.server.harness import Call, Harness, Reply, done, function_config, ops

SEC = 1000
MIN = 60 * SEC


async def _started(directory: Path, *functions: Callable[[Harness], dict[str, Any]]) -> Harness:
    h = Harness(directory)
    await h.start()
    await h.register(*(f(h) for f in functions))
    return h


async def _tick(h: Harness, ms: int, *, sent: bool = True) -> None:
    """Move the clock once all due work is done (events just sent are matched at their time)."""
    if sent:
        await h.service.scheduler.idle(settle_s=0.001)
    h.clock.advance(ms)
    await h.service.scheduler.idle(settle_s=0.001)


async def _replay(h: Harness, arrivals: list[tuple[int, int]], name: str, end: int,
                  next_tick: Callable[[int], int]) -> int:
    """Send each (time, key) of ``arrivals`` as an event ``name`` once the clock reaches its
    time, moving the clock by ``next_tick(now)`` until ``end``; then stop the server.
    Returns how many events were sent."""
    sent = 0
    try:
        while h.clock.now_ms() < end:
            now = h.clock.now_ms()
            due = sent
            while due < len(arrivals) and arrivals[due][0] <= now:
                due += 1
            if due > sent:
                await h.send(*[{"name": name, "data": {"k": k}} for _, k in arrivals[sent:due]])
            await _tick(h, next_tick(now), sent=due > sent)
            sent = due
    finally:
        await h.stop()
    return sent


def _recorder(h: Harness, into: list[tuple[int, dict[str, Any]]]) -> Callable[[Call], Any]:
    async def script(call: Call) -> Reply:
        into.append((h.clock.now_ms(), call.body["event"]["data"]))
        return done("ok")

    return script


# ------------------------------------------------------------------------------- throttle

async def throttle(directory: Path, *, windows: int = 60, limit: int = 10, burst: int = 2, keys: int = 2,
                   seed: int = 1) -> dict[str, Any]:
    """Events arrive at 1.3x the throttle's rate per key; the clock moves in uneven ticks of
    0.1 to 0.9 emission intervals, and once every 10 windows jumps 4 intervals at once (a
    stalled server: several planned starts are then due together). Over ``windows`` periods of
    one minute: the start rate per key, the most starts in one window (GCRA allows
    limit + burst - 1) and at one instant (at most ``burst``, stall or not)."""
    rng = random.Random(seed)
    period = MIN
    interval = period / limit
    starts: list[tuple[int, dict[str, Any]]] = []
    h = await _started(directory, lambda h: function_config(
        h.app, "thr", throttle={"limit": limit, "period": "1m", "burst": burst, "key": "event.data.k"}))
    h.app.script = _recorder(h, starts)
    t0 = h.clock.now_ms()
    end = t0 + windows * period
    arrivals = sorted((t0 + rng.randrange(windows * period), k)
                      for k in range(keys) for _ in range(int(1.3 * limit * windows)))
    def next_tick(now: int) -> int:
        stall = (now - t0) // (10 * period) != (now - t0 + interval) // (10 * period)
        return int((4.0 if stall else rng.uniform(0.1, 0.9)) * interval)

    await _replay(h, arrivals, "test/thr", end, next_tick)
    per_window: dict[int, list[int]] = {k: [0] * windows for k in range(keys)}
    at_once: dict[tuple[int, int], int] = defaultdict(int)
    for t, data in starts:
        if t < end:
            per_window[data["k"]][(t - t0) // period] += 1
            at_once[(data["k"], t)] += 1
    rates = [sum(w) / windows for w in per_window.values()]
    return {
        "windows": windows, "limit": limit, "burst": burst, "keys": keys, "starts": len(starts),
        "rate_per_window": [round(r, 3) for r in rates],
        "rate_error_pct": round(max(abs(r / limit - 1) * 100 for r in rates), 2),
        "max_per_window": max(max(w) for w in per_window.values()),
        "max_per_window_allowed": limit + burst - 1,
        "max_at_once": max(at_once.values()),
    }


# ----------------------------------------------------------------------------- rate limit

def max_in_any_window(times: list[int], period: int) -> int:
    """The most of ``times`` inside any half-open window [t, t + period)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - period:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def rate_limit(directory: Path, *, periods: int = 60, limit: int = 5, keys: int = 3,
                     seed: int = 2) -> dict[str, Any]:
    """Events at 3x the limit per key, at random times over ``periods`` one-minute periods:
    runs in any sliding one-minute window, per key (must be <= limit), and how many ran."""
    rng = random.Random(seed)
    period = MIN
    runs: list[tuple[int, dict[str, Any]]] = []
    h = await _started(directory, lambda h: function_config(
        h.app, "rl", rateLimit={"limit": limit, "period": "1m", "key": "event.data.k"}))
    h.app.script = _recorder(h, runs)
    t0 = h.clock.now_ms()
    end = t0 + periods * period
    arrivals = sorted((t0 + rng.randrange(periods * period), k) for k in range(keys) for _ in range(3 * limit * periods))
    sent = await _replay(h, arrivals, "test/rl", end, lambda now: rng.randrange(SEC, 8 * SEC))
    by_key: dict[int, list[int]] = defaultdict(list)
    for t, data in runs:
        by_key[data["k"]].append(t)
    return {
        "periods": periods, "limit": limit, "keys": keys, "events": sent, "runs": len(runs),
        "max_in_any_period": max(max_in_any_window(ts, period) for ts in by_key.values()),
        "min_in_any_full_period": min(
            sum(1 for t in ts if t0 + i * period <= t < t0 + (i + 1) * period)
            for ts in by_key.values() for i in range(periods)),
    }


# ------------------------------------------------------------------------------- debounce

async def debounce(directory: Path, *, keys: int = 50, seed: int = 3) -> dict[str, Any]:
    """``deb`` (period 10 s): each key gets 1-8 events 1-8 s apart, so exactly one run per key,
    with its last event, 10 s after it. ``debt`` (period 10 s, timeout 25 s): each key gets an
    event every 4 s for a minute, so the timeout cuts the wait; every run must carry the last
    event sent before it started and start at most 25 s after the first event of its window."""
    rng = random.Random(seed)
    runs: list[tuple[int, dict[str, Any]]] = []
    h = await _started(
        directory,
        lambda h: function_config(h.app, "deb", debounce={"period": "10s", "key": "event.data.k"}),
        lambda h: function_config(h.app, "debt", debounce={"period": "10s", "timeout": "25s", "key": "event.data.k"}),
    )

    async def script(call: Call) -> Reply:
        runs.append((h.clock.now_ms(), {**call.body["event"]["data"], "fn": call.body["event"]["name"]}))
        return done("ok")

    h.app.script = script
    plan: list[tuple[int, str, int, int]] = []  # (second, event name, key, n)
    for k in range(keys):
        t = rng.randrange(30)
        for n in range(rng.randint(1, 8)):
            plan.append((t, "test/deb", k, n))
            t += rng.randint(1, 8)
    for k in range(max(1, keys // 10)):
        start = rng.randrange(10)
        plan += [(start + 4 * n, "test/debt", k, n) for n in range(16)]
    plan.sort()
    sent: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)  # -> [(ms, n)]
    t0 = h.clock.now_ms()
    try:
        i = 0
        for second in range(plan[-1][0] + 40):
            now = h.clock.now_ms()
            batch = []
            while i < len(plan) and plan[i][0] <= second:
                _, name, k, n = plan[i]
                batch.append({"name": name, "data": {"k": k, "n": n}})
                sent[(name, k)].append((now, n))
                i += 1
            if batch:
                await h.send(*batch)
            await _tick(h, SEC, sent=bool(batch))
    finally:
        await h.stop()
    by_key: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for t, data in runs:
        by_key[(data["fn"], data["k"])].append((t, data["n"]))
    wrong_event = 0
    max_wait = 0
    runs_per_deb_key: list[int] = []
    for (name, k), events in sent.items():
        got = sorted(by_key.get((name, k), []))
        if name == "test/deb":
            runs_per_deb_key.append(len(got))
        window_first = events[0][0]
        for t, n in got:
            before = [e for e in events if e[0] < t]
            if not before or before[-1][1] != n:
                wrong_event += 1
            max_wait = max(max_wait, t - window_first) if name == "test/debt" else max_wait
            later = [e for e in events if e[0] >= t]
            window_first = later[0][0] if later else window_first
        if name == "test/deb" and got and got[0][0] - events[-1][0] != 10 * SEC:
            wrong_event += 1  # the run did not start one period after the last event
    del t0
    return {
        "keys": len(runs_per_deb_key), "events": sum(len(v) for v in sent.values()),
        "runs_per_key_min": min(runs_per_deb_key), "runs_per_key_max": max(runs_per_deb_key),
        "wrong_event_or_time": wrong_event,
        "timeout_keys": len(sent) - len(runs_per_deb_key),
        "timeout_runs": sum(len(v) for (name, _), v in by_key.items() if name == "test/debt"),
        "timeout_max_wait_s": max_wait / SEC, "timeout_s": 25,
    }


# ------------------------------------------------------------------------------- priority

async def priority(directory: Path, *, runs: int = 300, seed: int = 4) -> dict[str, Any]:
    """A function with concurrency 1 and ``priority.run = event.data.p``: while a blocker holds
    the slot, ``runs`` events arrive in random order with p = 120, 0 or -60. Expected start
    order: every p=120 (in arrival order), then every p=0, then p=-60 (which is also delayed
    60 s). Inversions = pairs started in the wrong order."""
    rng = random.Random(seed)
    order: list[tuple[int, dict[str, Any]]] = []
    gate = asyncio.Event()
    h = await _started(directory, lambda h: function_config(
        h.app, "prio", concurrency=1, priority={"run": "event.data.p"}))

    async def script(call: Call) -> Reply:
        data = call.body["event"]["data"]
        order.append((h.clock.now_ms(), data))
        if data["n"] < 0:
            await gate.wait()
        return done("ok")

    h.app.script = script
    try:
        await h.send({"name": "test/prio", "data": {"n": -1, "p": 0}})
        while not order:
            await asyncio.sleep(0.005)
        levels = [rng.choice((120, 0, -60)) for _ in range(runs)]
        await h.send(*[{"name": "test/prio", "data": {"n": n, "p": p}} for n, p in enumerate(levels)])
        await h.settle()
        gate.set()
        await h.service.scheduler.idle()
        early = sum(1 for _, d in order if d["p"] < 0)
        t_release = h.clock.now_ms()
        await _tick(h, 60 * SEC)
    finally:
        await h.stop()
    seq = [(d["p"], d["n"]) for _, d in order if d["n"] >= 0]
    inversions = sum(1 for i, a in enumerate(seq) for b in seq[i + 1:] if a[0] < b[0] or (a[0] == b[0] and a[1] > b[1]))
    return {
        "runs": runs, "started": len(seq), "inversions": inversions,
        "negative_started_before_delay": early,
        "negative_delay_s": min((t - t_release for t, d in order if d["p"] < 0), default=0) / SEC,
    }


# -------------------------------------------------------------------------------- restart

S = hash_step_id("s")


async def restart(directory: Path) -> dict[str, Any]:
    """Stop the in-process server and start a new one on the same SQLite directory and clock
    time: idempotency keys, a running singleton and a throttle's schedule must hold (also for
    an event sent after the restart, which only the stored throttle state can place)."""
    fns = (
        lambda h: function_config(h.app, "idem", idempotency="event.data.cart"),
        lambda h: function_config(h.app, "single", singleton={"key": "event.data.u", "mode": "skip"}),
        lambda h: function_config(h.app, "thr", throttle={"limit": 1, "period": "1m", "burst": 1}),
    )
    starts: list[tuple[int, str]] = []

    def script(h: Harness) -> Callable[[Call], Any]:
        async def reply(call: Call) -> Reply:
            name = call.body["event"]["name"]
            starts.append((h.clock.now_ms(), name))
            if name == "test/single" and S not in call.body["steps"]:
                return ops({"op": "Sleep", "id": S, "name": "1h"})  # stays Running
            return done("ok")

        return reply

    h = await _started(directory, *fns)
    h.app.script = script(h)
    t0 = h.clock.now_ms()
    try:
        await h.send({"name": "test/idem", "data": {"cart": 1}}, {"name": "test/single", "data": {"u": 1}},
                     *[{"name": "test/thr", "data": {"i": i}} for i in range(3)])
        await h.service.scheduler.idle()
    finally:
        await h.stop()
    h = Harness(directory)
    h.clock.set(t0)
    await h.start()
    h.app.script = script(h)
    try:
        await h.register(*(f(h) for f in fns))
        idem, single, other, _ = await h.send({"name": "test/idem", "data": {"cart": 1}},
                                              {"name": "test/single", "data": {"u": 1}},
                                              {"name": "test/single", "data": {"u": 2}},
                                              {"name": "test/thr", "data": {"i": 3}})  # after the stored TAT
        for _ in range(3):
            await _tick(h, MIN)
        figures = {
            "idempotent_runs_after_restart": len(await h.runs_for(idem)),
            "singleton_runs_after_restart": len(await h.runs_for(single)),
            "singleton_other_key_runs": len(await h.runs_for(other)),
            "throttle_starts_s": [(t - t0) / SEC for t, name in starts if name == "test/thr"],
        }
    finally:
        await h.stop()
    return figures
