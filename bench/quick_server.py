"""Quick server figures: per-step overhead and event ingest rate.

    python bench/quick_server.py [--runs 200] [--steps 10] [--events 20000]

Starts `pyngest dev` on a free port with a fresh SQLite dir, and a minimal scripted app (raw
aiohttp, no SDK) that answers each request with the next StepRun, so the figures are the
server's own cost. Per-step overhead = time from the app sending a step's result to the app
receiving the next request for that run (includes loopback HTTP both ways).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import orjson
from aiohttp import web

HEADERS = {"X-Inngest-SDK": "bench:v0", "x-inngest-req-version": "2", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class App:
    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.sent: dict[str, float] = {}  # run id -> when the last response left
        self.gaps: list[float] = []
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.ids = [hashlib.sha1(f"s{i}".encode()).hexdigest() for i in range(steps)]

    async def handle(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = orjson.loads(await request.read())
        run_id = body["ctx"]["run_id"]
        if run_id in self.sent:
            self.gaps.append(now - self.sent[run_id])
        else:
            self.started[run_id] = now
        done = len(body["steps"])
        if done >= self.steps:
            self.finished[run_id] = now
            self.sent.pop(run_id, None)
            return web.Response(body=b'{"ok":true}', headers=HEADERS)
        op = [{"op": "StepRun", "id": self.ids[done], "name": f"s{done}", "data": done}]
        resp = web.Response(body=orjson.dumps(op), status=206, headers=HEADERS)
        self.sent[run_id] = time.perf_counter()
        return resp


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=1, help="runs in flight at once (1 = latency)")
    ap.add_argument("--events", type=int, default=20000)
    args = ap.parse_args()

    port, app_port = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="pyngest-bench-")
    server = subprocess.Popen(
        [sys.executable, "-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll", "-p", str(port),
         "--sqlite-dir", tmp, "-l", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    bench_app = App(args.steps)
    web_app = web.Application()
    web_app.router.add_post("/api/inngest", bench_app.handle)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    base = f"http://127.0.0.1:{port}"
    url = f"http://127.0.0.1:{app_port}/api/inngest"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            for _ in range(200):
                try:
                    async with http.get(base + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            register = {"appName": "bench", "url": url, "sdk": "py:v0", "functions": [{
                "id": "bench-steps", "name": "steps", "triggers": [{"event": "bench/steps"}],
                "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": url + "?fnId=bench-steps&stepId=step"}}},
            }]}
            async with http.post(base + "/fn/register", data=orjson.dumps(register)) as r:
                assert r.status == 200, await r.text()

            # -- per-step overhead: runs one at a time (or --concurrency at once)
            sem = asyncio.Semaphore(args.concurrency)

            async def one_run(i: int) -> None:
                async with sem:
                    async with http.post(base + "/e/k", data=orjson.dumps({"name": "bench/steps", "data": {"i": i}})) as r:
                        await r.read()
                    target = len(bench_app.finished) + 1
                    while len(bench_app.finished) < target:
                        await asyncio.sleep(0.0005)

            t0 = time.perf_counter()
            if args.concurrency == 1:
                for i in range(args.runs):
                    await one_run(i)
            else:
                await asyncio.gather(*(one_run(i) for i in range(args.runs)))
                while len(bench_app.finished) < args.runs:
                    await asyncio.sleep(0.001)
            elapsed = time.perf_counter() - t0
            gaps_ms = [g * 1000 for g in bench_app.gaps]
            e2e = [(bench_app.finished[r] - bench_app.started[r]) * 1000 for r in bench_app.finished]
            print(f"per-step overhead ({args.steps}-step runs, {args.runs} runs, concurrency {args.concurrency}): "
                  f"p50 {statistics.median(gaps_ms):.2f} ms, p99 {pct(gaps_ms, 0.99):.2f} ms")
            print(f"run first request -> last request: p50 {statistics.median(e2e):.2f} ms, p99 {pct(e2e, 0.99):.2f} ms;"
                  f" {args.runs / elapsed:.0f} runs/s")

            # -- ingest: single events, then batches of 100, with 64 concurrent connections
            async def post_many(payloads: list[bytes]) -> list[float]:
                lat: list[float] = []
                queue = list(payloads)

                async def worker() -> None:
                    while queue:
                        body = queue.pop()
                        s = time.perf_counter()
                        async with http.post(base + "/e/k", data=body) as r:
                            await r.read()
                            assert r.status == 200
                        lat.append((time.perf_counter() - s) * 1000)

                await asyncio.gather(*(worker() for _ in range(64)))
                return lat

            single = [orjson.dumps({"name": "bench/ingest", "data": {"i": i}}) for i in range(args.events // 4)]
            t0 = time.perf_counter()
            lat = await post_many(single)
            dt = time.perf_counter() - t0
            print(f"ingest, single events: {len(single) / dt:.0f} events/s (p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms)")
            batches = [orjson.dumps([{"name": "bench/ingest", "data": {"i": i, "j": j}} for j in range(100)])
                       for i in range(args.events // 100)]
            t0 = time.perf_counter()
            lat = await post_many(batches)
            dt = time.perf_counter() - t0
            print(f"ingest, batches of 100: {len(batches) * 100 / dt:.0f} events/s (p50 {statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        await runner.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
