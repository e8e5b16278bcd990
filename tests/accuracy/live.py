"""Flow-control scenarios in real time: a ``pyngest dev`` process, and an app written with
pyngest's SDK (FastAPI on uvicorn, in this process) over loopback HTTP. The app measures; the
figures come back as plain JSON values (see ``sim.py`` for how tests and the benchmark use them).
"""

from __future__ import annotations

import asyncio
import datetime
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi
import httpx

import pyngest as inngest
import pyngest.fast_api
from pyngest.experimental.dev_server import DevServer, serve_app


def _client(srv_url: str, app_id: str) -> inngest.Inngest:
    return inngest.Inngest(app_id=app_id, is_production=False, api_base_url=srv_url, event_api_base_url=srv_url)


def _post(url: str, events: list[dict[str, Any]]) -> list[str]:
    res = httpx.post(f"{url}/e/test-key", json=events, timeout=120)
    res.raise_for_status()
    return list(res.json()["ids"])


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached in {timeout_s}s")
        time.sleep(0.02)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


# ---------------------------------------------------------------------------- concurrency

class InFlight:
    """The app's atomic counter: steps executing now per (constraint, key), with peaks and
    every moment a count went above its limit."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.lock = threading.Lock()
        self.now: Counter[tuple[str, Any]] = Counter()
        self.peak: Counter[str] = Counter()
        self.violations = 0
        self.steps = 0
        self.runs_done = 0

    def enter(self, counters: list[tuple[str, Any]]) -> None:
        with self.lock:
            self.steps += 1
            for c in counters:
                self.now[c] += 1
                self.peak[c[0]] = max(self.peak[c[0]], self.now[c])
                if self.now[c] > self.limits[c[0]]:
                    self.violations += 1

    def leave(self, counters: list[tuple[str, Any]]) -> None:
        with self.lock:
            for c in counters:
                self.now[c] -= 1


# Three functions, two constraints each: fn-scoped keys, an env-scoped key shared by a and b,
# an account-scoped key on c (with c's own unkeyed limit).
LIMITS = {"a.k": 2, "b.k": 1, "env.g": 3, "c": 4, "account.g": 2}
STEPS_PER_RUN = 5


def concurrency(*, steps: int = 10_000, keys: int = 20, groups: int = 3, hold_s: float = 0.002,
                seed: int = 5, timeout_s: float = 300) -> dict[str, Any]:
    """``steps`` steps (``steps / 5`` runs of 5 steps) with random keys over the three functions;
    each step counts itself in the app's counter while it sleeps ``hold_s``."""
    rng = random.Random(seed)
    flight = InFlight(LIMITS)
    srv = DevServer()
    srv.start()
    client = _client(srv.url, "acc-conc")
    C = inngest.Concurrency

    def make(fn: str, concurrency: list[inngest.Concurrency],
             counters: Callable[[dict[str, Any]], list[tuple[str, Any]]]) -> Any:
        @client.create_function(fn_id=fn, trigger=inngest.TriggerEvent(event=f"acc/{fn}"), concurrency=concurrency)
        async def handler(ctx: inngest.Context, step: inngest.Step) -> None:
            mine = counters(ctx.event.data)

            async def body() -> None:
                flight.enter(mine)
                await asyncio.sleep(hold_s)
                flight.leave(mine)

            for i in range(STEPS_PER_RUN):
                await step.run(f"s{i}", body)
            with flight.lock:
                flight.runs_done += 1

        return handler

    fns = [
        make("a", [C(limit=2, key="event.data.k"), C(limit=3, key="event.data.g", scope="env")],
             lambda d: [("a.k", d["k"]), ("env.g", d["g"])]),
        make("b", [C(limit=1, key="event.data.k"), C(limit=3, key="event.data.g", scope="env")],
             lambda d: [("b.k", d["k"]), ("env.g", d["g"])]),
        make("c", [C(limit=4), C(limit=2, key="event.data.g", scope="account")],
             lambda d: [("c", ""), ("account.g", d["g"])]),
    ]
    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, fns)
    runs = steps // STEPS_PER_RUN
    try:
        with serve_app(app) as base:
            srv.sync(base + "/api/inngest")
            started = time.monotonic()
            events = [{"name": f"acc/{rng.choice('abc')}", "data": {"k": rng.randrange(keys), "g": rng.randrange(groups)}}
                      for _ in range(runs)]
            for i in range(0, runs, 500):
                _post(srv.url, events[i:i + 500])
            _wait(lambda: flight.runs_done >= runs, timeout_s, f"{runs} runs to finish")
            elapsed = time.monotonic() - started
    finally:
        srv.stop()
    return {
        "steps": flight.steps, "runs": runs, "violations": flight.violations,
        "peak": dict(flight.peak), "limits": LIMITS, "seconds": round(elapsed, 2),
        "steps_per_s": round(flight.steps / elapsed, 1),
    }


# -------------------------------------------------------------------------------- batching

def batching(*, keys: int = 20, max_per_key: int = 25, flood: int = 20_000, max_size: int = 10,
             timeout_ms: int = 1000, seed: int = 6, timeout_s: float = 120) -> dict[str, Any]:
    """Events for ``keys`` batch keys (1 to ``max_per_key`` each, so most keys end with a
    partial batch that only the timeout fires), then at once one POST of ``flood`` events for
    another function (POSTs of 5,000, the most one may carry), which the server must match meanwhile. Per batch: its size, and for
    those the timeout fired, how late: arrival at the app - (first event's ts + timeout)."""
    rng = random.Random(seed)
    lock = threading.Lock()
    batches: list[tuple[int, float]] = []  # (size, lateness ms if fired by timeout)
    seen: Counter[tuple[int, int]] = Counter()
    srv = DevServer()
    srv.start()
    client = _client(srv.url, "acc-batch")

    @client.create_function(fn_id="bat", trigger=inngest.TriggerEvent(event="acc/bat"),
                            batch_events=inngest.Batch(max_size=max_size, timeout=datetime.timedelta(milliseconds=timeout_ms),
                                                       key="event.data.k"))
    async def bat(ctx: inngest.Context, step: inngest.Step) -> None:
        arrived = time.time() * 1000
        with lock:
            first_ts = min(e.ts for e in ctx.events)
            batches.append((len(ctx.events), arrived - (first_ts + timeout_ms)))
            seen.update((e.data["k"], e.data["n"]) for e in ctx.events)

    @client.create_function(fn_id="sink", trigger=inngest.TriggerEvent(event="acc/sink"),
                            rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(hours=1)))
    async def sink(ctx: inngest.Context, step: inngest.Step) -> None:
        pass

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [bat, sink])
    counts = {k: rng.randint(1, max_per_key) for k in range(keys)}
    events = [{"name": "acc/bat", "data": {"k": k, "n": n}} for k, c in counts.items() for n in range(c)]
    rng.shuffle(events)
    try:
        with serve_app(app) as base:
            srv.sync(base + "/api/inngest")
            _post(srv.url, events)
            flood_started = time.monotonic()
            for i in range(0, flood, 5_000):  # the most one POST may carry
                _post(srv.url, [{"name": "acc/sink", "data": {"i": n}} for n in range(i, min(flood, i + 5_000))])
            flood_s = time.monotonic() - flood_started
            _wait(lambda: sum(seen.values()) >= len(events), timeout_s, f"{len(events)} batched events")
            time.sleep(timeout_ms / 1000 + 0.2)  # any batch fired twice would show now
    finally:
        srv.stop()
    late = [lateness for size, lateness in batches if size < max_size]
    return {
        "events": len(events), "batches": len(batches), "max_size": max_size,
        "max_batch_size": max(size for size, _ in batches),
        "events_missing": sum(1 for e in events if (e["data"]["k"], e["data"]["n"]) not in seen),
        "events_repeated": sum(c - 1 for c in seen.values() if c > 1),
        "timeout_batches": len(late), "timeout_ms": timeout_ms, "flood_events": flood,
        "flood_post_s": round(flood_s, 2),
        "lateness_ms_p50": round(statistics.median(late), 1) if late else 0.0,
        "lateness_ms_p99": round(pct(late, 0.99), 1), "lateness_ms_max": round(max(late, default=0.0), 1),
        "lateness_ms_min": round(min(late, default=0.0), 1),
    }


# ---------------------------------------------------------------------------- kill -9

def sigkill(workdir: Path, *, period_s: float = 2.0, hold_s: float = 0.4) -> dict[str, Any]:
    """``pyngest dev`` killed with SIGKILL and restarted on the same port and SQLite directory.
    Before the kill: an idempotency key used, a singleton run still running, a debounce timer
    and a batch buffer pending (period/timeout ``period_s``), throttled starts planned (one per
    ``period_s``) and a concurrency-1 backlog (steps holding ``hold_s``). After it: the keys
    hold, the timer and the buffer fire once with what they had, the throttle keeps its spacing
    (also for an event sent after the restart) and every backlog run completes."""
    from tests.conformance.harness import TERMINAL, Server

    srv = Server(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    srv.start()
    client = _client(srv.url, "acc-kill")
    ran: Counter[str] = Counter()
    lock = threading.Lock()
    debounced: list[int] = []
    batches: list[list[int]] = []
    throttled: list[float] = []
    period = datetime.timedelta(seconds=period_s)

    def event(name: str) -> inngest.TriggerEvent:
        return inngest.TriggerEvent(event=f"acc/{name}")

    @client.create_function(fn_id="idem", trigger=event("idem"), idempotency="event.data.cart")
    async def idem(ctx: inngest.Context, step: inngest.Step) -> None:
        ran["idem"] += 1

    @client.create_function(fn_id="single", trigger=event("single"),
                            singleton=inngest.Singleton(key="event.data.u", mode="skip"))
    async def single(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.run("start", lambda: ran.update([f"single-{ctx.event.data['u']}"]))
        await step.wait_for_event("never", event="acc/never", timeout=datetime.timedelta(hours=1))

    @client.create_function(fn_id="deb", trigger=event("deb"), debounce=inngest.Debounce(period=period))
    async def deb(ctx: inngest.Context, step: inngest.Step) -> None:
        with lock:
            debounced.append(ctx.event.data["n"])

    @client.create_function(fn_id="bat", trigger=event("bat"),
                            batch_events=inngest.Batch(max_size=10, timeout=period))
    async def bat(ctx: inngest.Context, step: inngest.Step) -> None:
        with lock:
            batches.append([e.data["n"] for e in ctx.events])

    @client.create_function(fn_id="thr", trigger=event("thr"), throttle=inngest.Throttle(limit=1, period=period))
    async def thr(ctx: inngest.Context, step: inngest.Step) -> None:
        with lock:
            throttled.append(time.monotonic())

    @client.create_function(fn_id="conc", trigger=event("conc"), concurrency=[inngest.Concurrency(limit=1)])
    async def conc(ctx: inngest.Context, step: inngest.Step) -> None:
        async def hold() -> None:
            ran["conc"] += 1
            await asyncio.sleep(hold_s)

        await step.run("hold", hold)

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [idem, single, deb, bat, thr, conc])
    api = srv.api()
    try:
        with serve_app(app) as base:
            httpx.put(base + "/api/inngest", timeout=30).raise_for_status()
            api.wait_run(api.send("acc/idem", {"cart": 1}))
            api.wait_runs(api.send("acc/single", {"u": 1}))
            _wait(lambda: ran["single-1"] == 1, 30, "the singleton run to start")
            for n in range(2):
                api.send("acc/deb", {"n": n})
            for n in range(3):
                api.send("acc/bat", {"n": n})
                api.send("acc/thr", {"n": n})
            backlog = [api.send("acc/conc", {"n": n}) for n in range(4)]
            _wait(lambda: bool(throttled) and ran["conc"] >= 1, 30, "the first throttled and backlog runs")
            with lock:  # what the kill interrupts: nothing fired yet, starts and steps still to come
                pending = {"debounce": not debounced, "batch": not batches,
                           "throttle": len(throttled) < 3, "backlog": ran["conc"] < 4}
            srv.kill9()
            srv.start()
            again = api.send("acc/idem", {"cart": 1})
            blocked = api.send("acc/single", {"u": 1})
            free = api.send("acc/single", {"u": 2})
            api.send("acc/thr", {"n": 3})
            api.wait_runs(free)  # matched in order: the two before it are decided too
            _wait(lambda: ran["single-2"] == 1, 30, "the other singleton key to run")
            _wait(lambda: len(throttled) >= 4 and bool(debounced) and bool(batches), 60,
                  "the throttled, debounced and batched runs")
            done_runs = [api.wait_ended(api.wait_runs(e)[0]["run_id"], timeout=60) for e in backlog]
            time.sleep(period_s + 0.5)  # a timer or buffer firing twice would show now
            gaps = [b - a for a, b in zip(throttled, throttled[1:], strict=False)]
            figures = {
                "idempotent_runs_after_kill": len(api.event_runs(again)),
                "singleton_runs_after_kill": len(api.event_runs(blocked)),
                "singleton_other_key_runs": len(api.event_runs(free)),
                "idem_executions": ran["idem"],
                "debounced_events": debounced,
                "batches": batches,
                "throttle_starts": len(throttled),
                "throttle_min_gap_s": round(min(gaps), 2),
                "throttle_period_s": period_s,
                "backlog_runs_completed": sum(1 for r in done_runs if r["status"] == "Completed"),
                "backlog_runs": len(backlog),
                "pending_at_kill": pending,
            }
            assert all(r["status"] in TERMINAL for r in done_runs)
    finally:
        srv.stop()
    return figures
