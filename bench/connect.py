"""Connect vs HTTP: per-step overhead and one-step runs/s of the same scripted app, once served
over HTTP and once as a connect worker on the server's WebSocket gateway (docs/connect.md).

    python bench/connect.py [--runs 200] [--steps 10] [--one-step 3000] [--concurrency 64]

Starts `pyngest dev` on free ports with a fresh SQLite dir. The app is scripted, no SDK (as
bench/quick_server.py): each request is answered with the next StepRun, so the figures are the
server's and the transport's cost. Over connect the worker is a bare client of the protocol
(acks each request, then replies), with the messages of pyngest/protocol/connectpb.
Per-step overhead = from the app sending a step's result to it receiving the run's next request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import websockets
from aiohttp import web

from pyngest.protocol.connectpb import connect_pb2 as pb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick_server import HEADERS, free_port, pct  # noqa: E402


class Script:
    """The app's logic, whatever carries it: a run of ``steps`` StepRuns, then done."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.sent: dict[str, float] = {}
        self.gaps: list[float] = []
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.ids = [hashlib.sha1(f"s{i}".encode()).hexdigest() for i in range(steps)]

    def answer(self, body: bytes) -> tuple[int, bytes]:
        now = time.perf_counter()
        req = orjson.loads(body)
        run_id = req["ctx"]["run_id"]
        if run_id in self.sent:
            self.gaps.append(now - self.sent[run_id])
        else:
            self.started[run_id] = now
        done = len(req["steps"])
        if done >= self.steps:
            self.finished[run_id] = now
            self.sent.pop(run_id, None)
            return 200, b'{"ok":true}'
        return 206, orjson.dumps([{"op": "StepRun", "id": self.ids[done], "name": f"s{done}", "data": done}])

    def mark_sent(self, body: bytes, status: int) -> None:
        if status == 206:
            self.sent[orjson.loads(body)["ctx"]["run_id"]] = time.perf_counter()


def fn_config(slug: str, event: str, runtime: dict[str, Any]) -> dict[str, Any]:
    return {"id": slug, "name": slug, "triggers": [{"event": event}],
            "steps": {"step": {"id": "step", "name": "step", "runtime": runtime}}}


async def serve_http(script: Script, port: int) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        status, out = script.answer(body)
        script.mark_sent(body, status)
        return web.Response(body=out, status=status, headers=HEADERS)

    app = web.Application()
    app.router.add_post("/api/inngest", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def connect_worker(script: Script, base: str, app_name: str, fns: list[dict[str, Any]],
                         ready: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            base + "/v0/connect/start", data=pb.StartRequest().SerializeToString(),
            headers={"content-type": "application/protobuf"}) as r:
        start = pb.StartResponse.FromString(await r.read())
    frame: Callable[[int, Any], bytes] = lambda kind, msg: pb.ConnectMessage(  # noqa: E731
        kind=kind, payload=msg.SerializeToString()).SerializeToString()
    async with websockets.connect(start.gateway_endpoint, subprotocols=["v0.connect.inngest.com"],  # type: ignore[list-item]
                                  max_size=None) as ws:
        await ws.recv()  # GATEWAY_HELLO
        await ws.send(frame(pb.WORKER_CONNECT, pb.WorkerConnectRequestData(
            connection_id=start.connection_id, instance_id="bench-worker",
            auth_data=pb.AuthData(session_token=start.session_token, sync_token=start.sync_token),
            apps=[pb.AppConfiguration(app_name=app_name, functions=orjson.dumps(fns))],
            framework="connect", sdk_language="bench", sdk_version="v0")))
        await ws.recv()  # GATEWAY_CONNECTION_READY
        ready.set()
        async for raw in ws:
            msg = pb.ConnectMessage.FromString(raw)
            if msg.kind != pb.GATEWAY_EXECUTOR_REQUEST:
                continue
            req = pb.GatewayExecutorRequestData.FromString(msg.payload)
            await ws.send(frame(pb.WORKER_REQUEST_ACK, pb.WorkerRequestAckData(request_id=req.request_id)))
            status, out = script.answer(req.request_payload)
            reply = pb.SDKResponse(request_id=req.request_id, body=out, request_version=2,
                                   status=pb.NOT_COMPLETED if status == 206 else pb.DONE)
            script.mark_sent(req.request_payload, status)
            await ws.send(frame(pb.WORKER_REPLY, reply))


async def measure(http: aiohttp.ClientSession, base: str, event: str, script: Script, runs: int,
                  concurrency: int) -> tuple[float, list[float]]:
    """Runs ``runs`` runs with ``concurrency`` of them in flight at once (each client sends an
    event and waits for its run to end, then the next); (runs/s, per-step gaps in ms)."""
    script.gaps.clear()
    left = list(range(runs))

    async def client() -> None:
        while left:
            i = left.pop()
            before = len(script.finished)
            async with http.post(base + "/e/k", data=orjson.dumps({"name": event, "data": {"i": i}})) as r:
                await r.read()
            while len(script.finished) <= before:
                await asyncio.sleep(0.0005)

    target = len(script.finished) + runs
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    while len(script.finished) < target:
        await asyncio.sleep(0.0005)
    return runs / (time.perf_counter() - t0), [g * 1000 for g in script.gaps]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200, help="multi-step runs, one at a time (per-step overhead)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--one-step", type=int, default=3000, help="one-step runs for the throughput figure")
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    port, gw_port, app_port = free_port(), free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="pyngest-bench-connect-")
    server = subprocess.Popen(
        [sys.executable, "-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll", "-p", str(port),
         "--connect-gateway-port", str(gw_port), "--sqlite-dir", tmp, "-l", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    url = f"http://127.0.0.1:{app_port}/api/inngest"
    scripts = {"http": Script(args.steps), "connect": Script(args.steps)}
    ones = {"http": Script(1), "connect": Script(1)}
    runner = await serve_http(_Both(scripts["http"], ones["http"]), app_port)  # type: ignore[arg-type]
    worker: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as http:
            for _ in range(400):
                try:
                    async with http.get(base + "/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            register = {"appName": "bench-http", "url": url, "sdk": "py:v0", "functions": [
                fn_config("bench-http-steps", "bench/http-steps", {"type": "http", "url": url + "?fnId=bench-http-steps&stepId=step"}),
                fn_config("bench-http-one", "bench/http-one", {"type": "http", "url": url + "?fnId=bench-http-one&stepId=step"}),
            ]}
            async with http.post(base + "/fn/register", data=orjson.dumps(register)) as r:
                assert r.status == 200, await r.text()
            ready = asyncio.Event()
            fns = [fn_config("bench-connect-steps", "bench/connect-steps", {"type": "ws", "url": "ws://connect"}),
                   fn_config("bench-connect-one", "bench/connect-one", {"type": "ws", "url": "ws://connect"})]
            worker = asyncio.create_task(connect_worker(_Both(scripts["connect"], ones["connect"]), base,  # type: ignore[arg-type]
                                                        "bench-connect", fns, ready))
            await asyncio.wait_for(ready.wait(), 30)
            results: dict[str, dict[str, float]] = {}
            for kind in ("http", "connect"):
                _, gaps = await measure(http, base, f"bench/{kind}-steps", scripts[kind], args.runs, 1)
                rate, _ = await measure(http, base, f"bench/{kind}-one", ones[kind], args.one_step, args.concurrency)
                results[kind] = {"p50": statistics.median(gaps), "p99": pct(gaps, 0.99), "rate": rate}
            for kind, r in results.items():
                print(f"{kind:8s} per-step overhead ({args.steps}-step runs, {args.runs} runs, one at a time): "
                      f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms; one-step runs, {args.concurrency} at once: "
                      f"{r['rate']:.0f} runs/s")
    finally:
        if worker is not None:
            worker.cancel()
        server.terminate()
        server.wait(timeout=30)
        await runner.cleanup()


class _Both:
    """One carrier for two functions: the multi-step one and the one-step one, by function."""

    def __init__(self, steps: Script, one: Script) -> None:
        self.steps, self.one = steps, one

    def _pick(self, body: bytes) -> Script:
        return self.one if orjson.loads(body)["event"]["name"].endswith("-one") else self.steps

    def answer(self, body: bytes) -> tuple[int, bytes]:
        return self._pick(body).answer(body)

    def mark_sent(self, body: bytes, status: int) -> None:
        self._pick(body).mark_sent(body, status)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
