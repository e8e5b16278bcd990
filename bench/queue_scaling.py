"""How the ready queue's memory and dequeue time grow with the number of distinct keys.

    python bench/queue_scaling.py [--keys 10,10000,1000000] [--json out.json]

Builds the queue's partitions directly (``ReadyQueue``, no server, no store): N distinct
function-scoped concurrency keys (limit 1), each with a backlog of 2 due jobs, and all of them
also under one env-scoped limit of 10 (the worst case for waking: every key waits on it).

Figures per N:
- ``bytes_per_key``: memory the queue itself allocates per key (tracemalloc, the jobs excluded);
- ``pop_us_p50``/``p99``: handing out the next job while slots are free (one per key);
- ``cycle_us_p50``/``p99``: one job finishing (its slots released: a waiting key woken) and the
  next one handed out, with every key waiting on the full env limit.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyngest.server.model import Job, JobKind  # noqa: E402
from pyngest.server.queue.partitions import ReadyQueue  # noqa: E402

ENV_LIMIT = 10
SAMPLES = 20_000


def jobs_for(n: int, per_key: int = 2) -> list[Job]:
    jobs = []
    for k in range(n):
        counter = f"c:fn:{k:x}"
        payload = {"part": f"fn|{counter}", "ck": [[counter, 1], ["c:env:shared", ENV_LIMIT]]}
        jobs += [Job(id=f"{k}:{i}", kind=JobKind.EXECUTE, due_ms=i, payload=payload) for i in range(per_key)]
    return jobs


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(n: int) -> dict[str, Any]:
    jobs = jobs_for(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    queue = ReadyQueue()
    for job in jobs:
        queue.add(job)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    # hand out while slots are free: a fresh queue without the shared limit's pressure
    free = ReadyQueue()
    sample = jobs[: min(len(jobs), 2 * SAMPLES)]
    for job in sample:
        free.add(Job(id=job.id, kind=job.kind, due_ms=job.due_ms,
                     payload={"part": (job.payload or {})["part"], "ck": [(job.payload or {})["ck"][0]]}))
    pops = []
    for _ in range(min(SAMPLES, n)):
        t = time.perf_counter_ns()
        got = free.pop()
        pops.append((time.perf_counter_ns() - t) / 1000)
        if got is None:
            break

    # every key waits on the env limit: fill it, then finish one / hand out the next
    running = [queue.pop() for _ in range(ENV_LIMIT)]
    assert all(j is not None for j in running)
    queue.pop()  # every other key now waits on the full env counter
    cycles = []
    for i in range(min(SAMPLES, len(jobs) - ENV_LIMIT)):
        t = time.perf_counter_ns()
        done = running[i % ENV_LIMIT]
        assert done is not None
        queue.release(done)
        nxt = queue.pop()
        cycles.append((time.perf_counter_ns() - t) / 1000)
        assert nxt is not None, "a freed slot was left unused"
        running[i % ENV_LIMIT] = nxt
    return {
        "keys": n, "bytes_per_key": round(size / n),
        "pop_us_p50": round(pct(pops, 0.5), 2), "pop_us_p99": round(pct(pops, 0.99), 2),
        "cycle_us_p50": round(pct(cycles, 0.5), 2), "cycle_us_p99": round(pct(cycles, 0.99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="10,10000,1000000", help="comma-separated key counts")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    try:
        counts = [int(k) for k in args.keys.split(",") if k]
    except ValueError:
        parser.error(f"--keys: expected comma-separated integers, got {args.keys!r}")
    if not counts or min(counts) < 1:
        parser.error("--keys: each count must be at least 1")
    rows = []
    print(f"{'keys':>10} {'bytes/key':>10} {'pop p50 us':>11} {'pop p99 us':>11} {'cycle p50 us':>13} {'cycle p99 us':>13}")
    for n in counts:
        r = measure(n)
        rows.append(r)
        print(f"{r['keys']:>10} {r['bytes_per_key']:>10} {r['pop_us_p50']:>11} {r['pop_us_p99']:>11} "
              f"{r['cycle_us_p50']:>13} {r['cycle_us_p99']:>13}", flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps({"rows": rows}, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
