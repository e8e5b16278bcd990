"""Pause-index benchmark: many pending pauses on one event name, one event at a time.

Run: ``python bench/expr_index.py`` (100k pauses), ``--pauses 1000000`` for the flatness
check, ``--slow N`` to add N pauses that nothing can index (each is evaluated for every
event of the name, so they add to the cost of every event).

Each pause is built as the server builds a waitForEvent's: a condition as written in code,
interpolated with the waiting run's triggering event (``interpolate``). The mix: 90 %
``event.data.userId == async.data.userId``; the rest split between ``&&`` with a numeric
comparison, ``||`` of two equalities, ``in`` over a list, ``&&`` with a macro the index
cannot use, and a numeric range anchored on a second field. Half the events hit a pause,
half hit nothing. Time per event is measured around ``PauseIndex.match`` (lookup + formula
check + CEL confirmation). The server's memory with these pauses stored, and its index
rebuild on start, are measured in a real server process by ``bench/pause_server.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from pyngest.expr import compile, interpolate
from pyngest.expr.index import PauseIndex

EVENT = "app/order.paid"


def pause_source(i: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A waitForEvent condition as written in code, and the triggering event of its run."""
    trigger = {
        "name": "app/order.created",
        "data": {
            "userId": f"user-{i}",
            "orderId": f"order-{i}",
            "regions": [f"eu-{i}", f"us-{i}"],
            "minAmount": rng.randint(0, 500),
            "floor": rng.randint(0, 500) + 0.5,
        },
    }
    r = rng.random()
    if r < 0.90:
        source = "event.data.userId == async.data.userId"
    elif r < 0.93:
        source = "event.data.userId == async.data.userId && async.data.amount > event.data.minAmount"
    elif r < 0.95:
        source = "event.data.userId == async.data.userId || async.data.orderId == event.data.orderId"
    elif r < 0.97:
        source = "async.data.region in event.data.regions"
    elif r < 0.99:
        source = 'event.data.userId == async.data.userId && async.data.tags.exists(t, t == "vip")'
    else:
        source = "async.data.amount >= event.data.floor && async.data.orderId == event.data.orderId"
    return source, trigger


def pause_expression(i: int, rng: random.Random) -> str:
    """The condition as the server stores it: interpolated with the run's event."""
    return interpolate(*pause_source(i, rng))


def slow_expression(i: int) -> str:
    return f'async.data.note.startsWith("urgent-{i}")'


def incoming(rng: random.Random, n: int) -> dict[str, Any]:
    i = rng.randrange(n) if rng.random() < 0.5 else n + rng.randrange(n)
    return {
        "name": EVENT,
        "id": "01JB0000000000000000000000",
        "ts": 1_760_000_000_000,
        "data": {
            "userId": f"user-{i}",
            "orderId": f"order-{i}",
            "region": f"eu-{i}",
            "amount": rng.randint(0, 1000),
            "tags": ["vip"] if rng.random() < 0.5 else [],
            "note": "normal",
        },
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def build(pauses: list[tuple[str, str, str]]) -> PauseIndex:
    index = PauseIndex()
    for pause_id, name, expression in pauses:
        index.add(pause_id, name, expression)
    return index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pauses", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--slow", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file (bench/run.py reads it)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n = args.pauses

    stored = [(f"pause-{i}", EVENT, pause_expression(i, rng)) for i in range(n)]
    stored += [(f"slow-{i}", EVENT, slow_expression(i)) for i in range(args.slow)]
    for _, _, expression in stored[:1000]:
        compile(expression)  # warm the shape cache: every later add is a new pause, same shapes

    gc.collect()
    rss_before = rss_kib()
    build_s = timed(lambda: globals().__setitem__("_index", build(stored)))
    index: PauseIndex = globals()["_index"]
    rss_after = rss_kib()

    # Adding a wait, as the executor does for a waitForEvent: interpolate the condition with
    # the run's event and check it compiles, then (once committed) file it in the index.
    add_samples = []
    wait_samples = []
    for i in range(2000):
        source, trigger = pause_source(n + 10_000 + i, rng)
        start = time.perf_counter()
        expression = interpolate(source, trigger)
        compile(expression)
        filed = time.perf_counter()
        index.add(f"extra-{i}", EVENT, expression)
        end = time.perf_counter()
        add_samples.append(end - filed)
        wait_samples.append(end - start)
    remove_samples = []
    for i in range(2000):
        start = time.perf_counter()
        index.remove(f"extra-{i}")
        remove_samples.append(time.perf_counter() - start)

    events = [incoming(rng, n) for _ in range(args.events)]
    for event in events[:500]:
        index.match(event)  # warm the per-presence-pattern programs
    # Wall time, and this thread's CPU time: on a shared machine the second leaves out the
    # time another process held the core.
    samples = []
    cpu_samples = []
    hits = 0
    gc.disable()
    for event in events:
        start, cpu_start = time.perf_counter(), time.thread_time()
        found = index.match(event)
        cpu_samples.append(time.thread_time() - cpu_start)
        samples.append(time.perf_counter() - start)
        hits += bool(found)
    gc.enable()

    us = 1e6
    print(f"pauses: {len(index):,} on one event name ({args.slow} never indexable)")
    print(f"events: {len(events):,}, {hits:,} with at least one match")
    print(
        f"match per event: p50 {percentile(samples, 0.5) * us:.1f} us, "
        f"p99 {percentile(samples, 0.99) * us:.1f} us, "
        f"p99.9 {percentile(samples, 0.999) * us:.1f} us, "
        f"mean {statistics.fmean(samples) * us:.1f} us"
    )
    print(
        f"match per event, CPU time: p50 {percentile(cpu_samples, 0.5) * us:.1f} us, "
        f"p99 {percentile(cpu_samples, 0.99) * us:.1f} us, "
        f"p99.9 {percentile(cpu_samples, 0.999) * us:.1f} us"
    )
    print(
        f"add one pause: p50 {percentile(add_samples, 0.5) * us:.1f} us, "
        f"p99 {percentile(add_samples, 0.99) * us:.1f} us; "
        f"remove: p50 {percentile(remove_samples, 0.5) * us:.1f} us"
    )
    print(
        f"add one wait (interpolate + compile + index): p50 {percentile(wait_samples, 0.5) * us:.1f} us, "
        f"p99 {percentile(wait_samples, 0.99) * us:.1f} us"
    )
    print(
        f"build from {len(stored):,} stored pauses: {build_s:.2f} s ({build_s / len(stored) * us:.1f} us each)"
    )
    print(f"RSS growth while building: {(rss_after - rss_before) / 1024:.1f} MiB")
    if args.json:
        figures = {
            "pauses": len(index), "events": len(events), "events_matched": hits,
            "match_p50_us": percentile(samples, 0.5) * us, "match_p99_us": percentile(samples, 0.99) * us,
            "match_cpu_p50_us": percentile(cpu_samples, 0.5) * us,
            "match_cpu_p99_us": percentile(cpu_samples, 0.99) * us,
            "index_add_p50_us": percentile(add_samples, 0.5) * us,
            "add_wait_p50_us": percentile(wait_samples, 0.5) * us,
            "add_wait_p99_us": percentile(wait_samples, 0.99) * us,
            "build_us_per_pause": build_s / len(stored) * us,
            "index_rss_mib": (rss_after - rss_before) / 1024,
        }
        with open(args.json, "w") as f:
            json.dump({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}, f, indent=2)

    if n <= 200_000:
        del index
        globals().pop("_index", None)
        gc.collect()
        tracemalloc.start()
        index = build(stored)
        current, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"tracemalloc, index after build: {current / 2**20:.1f} MiB "
            f"({current / len(stored):.0f} B per pause; the expression strings themselves "
            "belong to the caller and are not counted)"
        )


if __name__ == "__main__":
    main()
