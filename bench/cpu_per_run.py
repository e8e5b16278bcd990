"""CPU time per run of the server and of the app, over a fixed number of runs (issue 16).

    .venv/bin/python -m bench.cpu_per_run [--systems pyngest-sdk] [--kind ten] [--runs 500]
                                          [--concurrency 1,64] [--rounds 3]

Wall-clock figures on a shared machine move by 2x from one minute to the next; the CPU a
process spends per run moves much less (it grows somewhat under contention: caches, the
GIL's hand-overs). This starts each system once, warms it up, then measures ``--runs`` runs
at each concurrency, ``--rounds`` times, reading user + system CPU of the server (the engine)
and of the app from /proc before and after. Prints the median of the rounds per figure, and
each round's, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from typing import Any

from bench.harness.load import closed_loop
from bench.harness.procs import cpu_seconds
from bench.run import all_systems


async def measure(system_name: str, kind: str, runs: int, concurrencies: list[int], rounds: int) -> dict[str, Any]:
    system = all_systems()[system_name]()
    await system.start()
    try:
        engine = system.engine_pids()
        app = [p for p in system.all_pids() if p not in engine]
        await closed_loop(lambda i: system.run(kind, i), concurrency=16, runs=max(200, runs // 2))  # type: ignore[arg-type]
        out: dict[str, Any] = {}
        n = 10_000_000
        for c in concurrencies:
            server_ms: list[float] = []
            app_ms: list[float] = []
            per_s: list[float] = []
            for _ in range(rounds):
                s0, a0 = cpu_seconds(engine), cpu_seconds(app)
                res = await closed_loop(lambda i, base=n: system.run(kind, base + i),  # type: ignore[misc]
                                        concurrency=c, runs=runs)
                n += runs
                server_ms.append(round((cpu_seconds(engine) - s0) * 1000 / res.completed, 3))
                app_ms.append(round((cpu_seconds(app) - a0) * 1000 / res.completed, 3))
                per_s.append(round(res.throughput, 1))
            out[f"c{c}"] = {"server_cpu_ms_per_run": statistics.median(server_ms),
                            "app_cpu_ms_per_run": statistics.median(app_ms),
                            "runs_per_s": statistics.median(per_s),
                            "rounds": {"server": server_ms, "app": app_ms, "runs_per_s": per_s}}
        return out
    finally:
        await system.stop()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": os.getloadavg(), "kind": args.kind, "runs": args.runs}
    for name in args.systems.split(","):
        out[name] = await measure(name, args.kind, args.runs, [int(c) for c in args.concurrency.split(",")],
                                  args.rounds)
    out["load_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="pyngest-sdk")
    parser.add_argument("--kind", default="ten", choices=["one", "ten"])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=1))
