"""Systems side by side, measured in turns: by default the pyngest SDK with checkpointing on
and off (issue 16).

    .venv/bin/python -m bench.checkpointing [--systems pyngest-sdk,pyngest-sdk-classic]
                                            [--rounds 150] [--block 1] [--windows 3] [--seconds 5]

The systems of ``bench.run`` named (by default ``pyngest-sdk``, the SDK's default:
checkpointing, and ``pyngest-sdk-classic``, ``INNGEST_CHECKPOINTING=0``) run at once, each its
own server and app, and are measured in turns, so a machine whose speed changes during the run
(a shared one: the host's steal time and its neighbours' load come and go within minutes)
weighs on all alike:

- latency one run at a time: rounds of ``--block`` 1-step and as many 10-step runs on each
  system, the order of the systems swapped every round (a block of 1 alternates run by run, so
  every run follows another system's, caches cold; larger blocks keep a system warm within its
  turn, as ``bench.run`` does, while the turns still spread the machine's phases over all);
- throughput with 64 in flight: windows of ``--seconds`` per system and workflow, in turns.
  Each window's throughput is divided by that of the first system's window next to it, so the
  ratios come with their spread.

Only the system in its turn is loaded; the others sit idle meanwhile. Prints medians, each
window's throughput and the host's steal time in it, as JSON.
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
from bench.harness.procs import machine_ticks, steal_pct
from bench.run import all_systems

KINDS = ("one", "ten")


async def main(names: list[str], rounds: int, windows: int, seconds: float, block: int = 1) -> dict[str, Any]:
    load_before = os.getloadavg()
    known = all_systems()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; known: {sorted(known)}")
    systems = [known[n]() for n in names]
    for system in systems:
        await system.start()
    try:
        for system in systems:  # warm-up
            for kind in KINDS:
                await closed_loop(lambda i, s=system, k=kind: s.run(k, i), concurrency=16, runs=200)
        latency: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in KINDS} for s in systems}
        blocks: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in KINDS} for s in systems}
        n = 10_000_000
        for r in range(rounds):
            for system in (systems if r % 2 == 0 else systems[::-1]):
                for kind in KINDS:
                    these = []
                    for _ in range(block):
                        n += 1
                        start = time.perf_counter()
                        await system.run(kind, n)  # type: ignore[arg-type]
                        these.append((time.perf_counter() - start) * 1000)
                    latency[system.name][kind] += these
                    blocks[system.name][kind].append(round(pct(these, 50), 3))
        throughput: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in KINDS} for s in systems}
        steal: dict[str, dict[str, list[float]]] = {s.name: {k: [] for k in KINDS} for s in systems}
        for w in range(windows):
            for system in (systems if w % 2 == 0 else systems[::-1]):
                for kind in KINDS:
                    ticks = machine_ticks()
                    res = await closed_loop(lambda i, s=system, k=kind: s.run(k, i),  # type: ignore[misc]
                                            concurrency=64, seconds=seconds)
                    throughput[system.name][kind].append(round(res.throughput, 1))
                    steal[system.name][kind].append(steal_pct(ticks, machine_ticks()))
    finally:
        for system in systems:
            await system.stop()
    out: dict[str, Any] = {"load_before": load_before, "load_after": os.getloadavg(), "rounds": rounds,
                           "block": block, "windows": windows, "seconds": seconds}
    first = systems[0].name
    for name in latency:
        out[name] = {
            **{f"{k}_c1_p50_ms": round(pct(v, 50), 3) for k, v in latency[name].items()},
            **{f"{k}_c1_p99_ms": round(pct(v, 99), 3) for k, v in latency[name].items()},
            **({f"{k}_c1_p50_ms_blocks": v for k, v in blocks[name].items()} if block > 1 else {}),
            **{f"{k}_c64_per_s_median": statistics.median(v) for k, v in throughput[name].items()},
            **{f"{k}_c64_per_s_windows": v for k, v in throughput[name].items()},
            **{f"{k}_c64_steal_pct_windows": v for k, v in steal[name].items()},
        }
        if name != first:
            for k in KINDS:
                ratios = [round(a / b, 2) for a, b in zip(throughput[first][k], throughput[name][k], strict=True) if b]
                out[name][f"{k}_c64_{first}_over_this"] = ratios
                out[name][f"{k}_c64_{first}_over_this_median"] = (
                    round(statistics.median(ratios), 2) if ratios else None)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="pyngest-sdk,pyngest-sdk-classic",
                        help="systems of bench.run, comma-separated; ratios are against the first")
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--block", type=int, default=1, help="runs of each kind per system in a round")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.systems.split(","), args.rounds, args.windows, args.seconds,
                                       args.block)), indent=1))
