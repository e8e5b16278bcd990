"""Flow-control accuracy at full size: the scenarios of ``tests/accuracy`` (which run them
smaller in CI), with their figures.

    python bench/flow_accuracy.py [--json out.json] [--only concurrency,throttle,...]

Real-time scenarios start ``pyngest dev`` and an app written with pyngest's SDK (FastAPI on
uvicorn, loopback HTTP); simulated-time ones run the server in this process on a test clock
with a scripted app over loopback HTTP, so an hour of windows passes in seconds.

The JSON written (and printed) is one dict; every top-level key is a scenario, each a flat dict:

- ``concurrency``: 10,000 steps, random keys, fn/env/account scopes, two constraints per
  function. ``violations`` (moments the app counted more steps of a key than its limit; goal 0),
  ``steps``, ``peak`` and ``limits`` per constraint, ``steps_per_s``.
- ``throttle``: 60 one-minute windows, limit 10, burst 2, 2 keys, arrivals at 1.3x the limit,
  a 4-interval stall every 10 windows. ``rate_error_pct`` (goal <= 5), ``max_per_window`` vs
  ``max_per_window_allowed`` (limit + burst - 1), ``max_at_once`` (goal <= ``burst``).
- ``rate_limit``: 60 periods, limit 5, 3 keys, arrivals at 3x. ``max_in_any_period`` (any
  sliding window; goal <= ``limit``), ``runs``, ``events``.
- ``debounce``: 500 keys. ``runs_per_key_min``/``_max`` (goal 1/1), ``wrong_event_or_time``
  (runs without the key's last event, or not one period after it; goal 0),
  ``timeout_max_wait_s`` vs ``timeout_s``.
- ``batching``: batches of max 10 with a 1 s timeout on 50 keys, while a POST of 20,000 other
  events (4 POSTs of 5,000) is matched. ``max_batch_size`` (goal <= ``max_size``), ``events_missing``,
  ``events_repeated`` (goal 0), ``lateness_ms_p50``/``_p99``/``_max`` of timeout-fired batches
  (arrival at the app - first event's ts - timeout; goal <= 250).
- ``batching_quiet``: the same batches with no other load on the server.
- ``priority``: 1,000 runs with p = 120/0/-60 behind a blocker. ``inversions`` (goal 0),
  ``negative_delay_s``.
- ``restart``: in-process stop/start on the same SQLite dir: ``idempotent_runs_after_restart``
  and ``singleton_runs_after_restart`` (goal 0), ``throttle_starts_s`` (goal [0, 60, 120, 180]).
- ``kill9``: ``pyngest dev`` SIGKILLed and restarted: ``idempotent_runs_after_kill`` and
  ``singleton_runs_after_kill`` (goal 0), ``debounced_events`` (goal [1]: one run, the last
  event), ``batches`` (goal [[0, 1, 2]]), ``throttle_min_gap_s`` (goal about
  ``throttle_period_s``), ``backlog_runs_completed`` (goal ``backlog_runs``), ``pending_at_kill``.
- ``machine``: ``cpus``, ``python``, ``platform``; ``seconds`` per scenario under ``timing``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, for tests.accuracy

from tests.accuracy import live, sim  # noqa: E402


def _sim(fn: Callable[..., Any], **kw: Any) -> Callable[[Path], dict[str, Any]]:
    return lambda d: dict(asyncio.run(fn(d, **kw)))


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "concurrency": lambda d: live.concurrency(steps=10_000),
    "throttle": _sim(sim.throttle, windows=60),
    "rate_limit": _sim(sim.rate_limit, periods=60),
    "debounce": _sim(sim.debounce, keys=500),
    "batching": lambda d: live.batching(keys=50, flood=20_000),
    "batching_quiet": lambda d: live.batching(keys=50, flood=0),
    "priority": _sim(sim.priority, runs=1_000),
    "restart": _sim(sim.restart),
    "kill9": lambda d: live.sigkill(d / "server"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "timing": {},
    }
    for name in chosen:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"flow-{name}-") as d:
            out[name] = SCENARIOS[name](Path(d))
        out["timing"][name] = round(time.monotonic() - started, 1)
        print(f"{name:12s} {orjson.dumps(out[name]).decode()}", flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
