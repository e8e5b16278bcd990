"""The pyngest SDK with checkpointing on and off, side by side (issue 16).

    .venv/bin/python -m bench.checkpointing [--rounds 150] [--windows 3] [--seconds 5]

Two systems of ``bench.run`` run at once — ``pyngest-sdk`` (the SDK's default: checkpointing)
and ``pyngest-sdk-classic`` (``INNGEST_CHECKPOINTING=0``), each its own ``pyngest dev`` and
FastAPI app — and are measured in turns, so a machine whose load changes during the run (a
shared one) weighs on both alike:

- latency one run at a time: rounds of one 1-step and one 10-step run on each system, the order
  of the systems swapped every round;
- throughput with 64 in flight: windows of ``--seconds`` per system and workflow, in turns.

Prints medians (and each window's throughput) as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from bench.harness.load import closed_loop, pct
from bench.harness.systems.pyngest import PyngestSDK, PyngestSDKClassic


async def main(rounds: int, windows: int, seconds: float) -> dict[str, Any]:
    load_before = os.getloadavg()
    systems = [PyngestSDK(), PyngestSDKClassic()]
    for system in systems:
        await system.start()
    try:
        for system in systems:  # warm-up
            for kind in ("one", "ten"):
                await closed_loop(lambda i, s=system, k=kind: s.run(k, i), concurrency=16, runs=200)
        latency: dict[str, dict[str, list[float]]] = {s.name: {"one": [], "ten": []} for s in systems}
        n = 10_000_000
        for r in range(rounds):
            for system in (systems if r % 2 == 0 else systems[::-1]):
                for kind in ("one", "ten"):
                    n += 1
                    start = time.perf_counter()
                    await system.run(kind, n)  # type: ignore[arg-type]
                    latency[system.name][kind].append((time.perf_counter() - start) * 1000)
        throughput: dict[str, dict[str, list[float]]] = {s.name: {"one": [], "ten": []} for s in systems}
        for w in range(windows):
            for system in (systems if w % 2 == 0 else systems[::-1]):
                for kind in ("one", "ten"):
                    res = await closed_loop(lambda i, s=system, k=kind: s.run(k, i),  # type: ignore[misc]
                                            concurrency=64, seconds=seconds)
                    throughput[system.name][kind].append(round(res.throughput, 1))
    finally:
        for system in systems:
            await system.stop()
    out: dict[str, Any] = {"load_before": load_before, "load_after": os.getloadavg(), "rounds": rounds,
                           "windows": windows}
    for name in latency:
        out[name] = {
            **{f"{k}_c1_p50_ms": round(pct(v, 50), 3) for k, v in latency[name].items()},
            **{f"{k}_c1_p99_ms": round(pct(v, 99), 3) for k, v in latency[name].items()},
            **{f"{k}_c64_per_s_median": statistics.median(v) for k, v in throughput[name].items()},
            **{f"{k}_c64_per_s_windows": v for k, v in throughput[name].items()},
        }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds, args.windows, args.seconds)), indent=1))
