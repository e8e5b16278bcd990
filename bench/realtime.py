"""Realtime figures: publish → subscriber latency, and frames delivered per second with many
subscribers.

    python bench/realtime.py [--subscribers 100] [--messages 2000] [--cluster]

Starts `pyngest dev` on a free port with a fresh SQLite directory (``--cluster``: two processes
on PostgreSQL + Redis, publishing to one and subscribing on the other; needs the local test
database and Redis), opens ``--subscribers`` WebSocket subscriptions to one channel, then:
- latency: ``--messages`` REST publishes one after another, each timed from the POST to its
  frame reaching the first subscriber (p50, p99);
- fan-out: the same number published 8 at a time; frames delivered to all subscribers per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, for bench.quick_server

from bench.quick_server import free_port, pct  # noqa: E402


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(workdir: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll",
                             "-p", str(port), "--sqlite-dir", workdir, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with http.get(f"{url}/health") as res:
                if res.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not start")


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="pyngest-bench-realtime-")
    procs = []
    try:
        extra: list[str] = []
        if args.cluster:
            import asyncpg

            schema = f"bench_{uuid.uuid4().hex[:12]}"
            conn = await asyncpg.connect(args.postgres)
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.close()
            extra = ["--postgres-uri", f"{args.postgres}?search_path={schema}", "--redis-uri", args.redis]
        nodes = 2 if args.cluster else 1
        urls = []
        for i in range(nodes):
            proc, url = start_server(os.path.join(tmp, f"n{i}"), extra)
            procs.append(proc)
            urls.append(url)
        publish_url, subscribe_url = urls[0], urls[-1]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            for url in urls:
                await wait_healthy(http, url)
            channel = f"bench:{uuid.uuid4().hex}"
            async with http.post(f"{subscribe_url}/v1/realtime/token",
                                 json=[{"channel": channel, "name": "t", "kind": "run"}]) as res:
                jwt = (await res.json())["jwt"]
            ws_url = subscribe_url.replace("http://", "ws://") + f"/v1/realtime/connect?token={jwt}"
            sockets = [await http.ws_connect(ws_url, max_msg_size=0) for _ in range(args.subscribers)]
            params = {"channel": channel, "topic": "t"}
            first = sockets[0]

            async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
                for _ in range(args.messages):
                    msg = await ws.receive()
                    assert msg.type == aiohttp.WSMsgType.TEXT, f"subscriber closed: {msg}"

            # latency: one publish at a time, until its frame reaches the first subscriber (the
            # others read meanwhile)
            others = [asyncio.create_task(reader(ws)) for ws in sockets[1:]]
            latencies = []
            for n in range(args.messages):
                t0 = time.perf_counter()
                async with http.post(f"{publish_url}/v1/realtime/publish", params=params, json={"n": n}) as res:
                    assert res.status == 200, await res.text()
                while True:
                    frame = orjson.loads((await first.receive()).data)
                    if frame["data"]["n"] == n:
                        break
                latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.gather(*others)

            # fan-out: 8 publishers at once; every subscriber reads everything
            async def publisher(k: int) -> None:
                for n in range(k, args.messages, 8):
                    async with http.post(f"{publish_url}/v1/realtime/publish", params=params,
                                         json={"n": n}) as res:
                        assert res.status == 200

            cpu0 = sum(cpu_s(p.pid) for p in procs)
            t0 = time.perf_counter()
            await asyncio.gather(*(publisher(k) for k in range(8)), *(reader(ws) for ws in sockets))
            took = time.perf_counter() - t0
            server_cpu = sum(cpu_s(p.pid) for p in procs) - cpu0
            for ws in sockets:
                await ws.close()
        where = "2 processes, PostgreSQL + Redis" if args.cluster else "1 process, SQLite"
        print(f"realtime ({where}; {args.subscribers} WebSocket subscribers, {args.messages} messages)")
        print(f"  publish -> first subscriber: p50 {statistics.median(latencies):.2f} ms, "
              f"p99 {pct(latencies, 0.99):.2f} ms (one publish at a time)")
        print(f"  fan-out: {args.messages / took:,.0f} publishes/s, "
              f"{args.messages * args.subscribers / took:,.0f} frames delivered/s (8 publishers); server CPU "
              f"{server_cpu * 1e6 / (args.messages * args.subscribers):.0f} µs per delivered frame")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--postgres", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args()))
