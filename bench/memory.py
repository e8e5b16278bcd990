"""Memory over a long run: N one-step runs through a real ``pyngest dev`` (SQLite, scripted app),
64 in flight, printing the server's RSS every ``--every`` completed runs (issue 13: RSS after
1,000,000 runs within 20 % of RSS after 200,000; caches must be bounded).

    .venv/bin/python -m bench.memory                      # 1,000,000 runs, RSS every 100,000
    .venv/bin/python -m bench.memory --runs 200000 --every 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.harness.load import closed_loop
from bench.harness.procs import rss_bytes
from bench.harness.systems.pyngest import PyngestRaw


async def measure(runs: int, every: int, concurrency: int) -> dict[str, Any]:
    system = PyngestRaw()
    await system.start()
    rows: list[dict[str, Any]] = []
    try:
        pids = system.engine_pids()
        started = time.monotonic()
        done = 0
        while done < runs:
            chunk = min(every, runs - done)
            res = await closed_loop(lambda i, base=done: system.run("one", base + i), concurrency=concurrency,
                                    runs=chunk)
            done += chunk
            row = {"runs": done, "rss_mb": round(rss_bytes(pids) / 2**20, 1), "per_s": res.summary()["per_s"],
                   "errors": res.summary()["errors"], "elapsed_s": round(time.monotonic() - started, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        await system.stop()
    out: dict[str, Any] = {"runs": runs, "rows": rows}
    base = next((r for r in rows if r["runs"] >= runs // 5), None)  # RSS at a fifth of the way
    if base is not None and rows:
        out["growth_pct_after_fifth"] = round((rows[-1]["rss_mb"] - base["rss_mb"]) / base["rss_mb"] * 100, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    result = asyncio.run(measure(args.runs, args.every, args.concurrency))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
