"""Does a hung app delay another app's runs? (issue 13, row 1)

    python -m bench.hung_app [--hung 1000] [--samples 200]

An in-process server (SQLite, the real HTTP path to apps) with two apps: one accepts connections
and never answers, the other answers at once. Measures, one event at a time, the healthy app's
latency from ``POST /e`` to its run's first request arriving: first with nothing else going on,
then with ``--hung`` requests in flight (hung) on the other app. Prints p50/p99/max for both.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.integration.server.harness import Call, FakeApp, Harness, Reply, done, function_config
from tests.integration.server.test_app_isolation import HungApp


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def latencies(h: Harness, arrived: dict[int, float], samples: int, offset: int) -> list[float]:
    out = []
    for i in range(offset, offset + samples):
        start = time.perf_counter()
        await h.send({"name": "test/ok", "data": {"i": i}})
        while i not in arrived:
            await asyncio.sleep(0.0005)
        out.append((arrived[i] - start) * 1000)
    return out


async def main(hung_requests: int, samples: int) -> None:
    hung = HungApp()
    await hung.start()
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(Path(tmp), queue_workers=100, app_requests=hung_requests)
        await h.start()
        arrived: dict[int, float] = {}

        async def answer(call: Call) -> Reply:
            arrived.setdefault(call.body["event"]["data"]["i"], time.perf_counter())
            return done(True)

        h.app.script = answer
        try:
            await h.service.after_sync(await h.service.registry.register({
                "appName": "hung", "url": hung.url, "sdk": "py:v0.5.19", "framework": "fast_api",
                "functions": [function_config(FakeApp(port=hung.port), "stuck")],
            }))
            await h.register(function_config(h.app, "ok"))
            await latencies(h, arrived, 20, -100)  # warm up
            idle = await latencies(h, arrived, samples, 0)
            for start in range(0, hung_requests, 500):
                await h.send(*[{"name": "test/stuck"} for _ in range(min(500, hung_requests - start))])
            deadline = time.monotonic() + 120
            while hung.in_flight() < hung_requests and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            busy = await latencies(h, arrived, samples, samples)
            print(f"requests hung on the other app: {hung.in_flight()}")
            for name, values in (("idle", idle), ("hung", busy)):
                print(f"{name}: event -> first request p50 {pct(values, 0.5):.1f} ms, "
                      f"p99 {pct(values, 0.99):.1f} ms, max {max(values):.1f} ms ({len(values)} events)")
        finally:
            await h.stop()
            await hung.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hung", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.hung, args.samples))
