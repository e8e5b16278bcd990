"""SDK replay micro-benchmark: time per request to replay a run with N memoized steps.

Each request carries N memoized ``step.run`` results and the function completes (HTTP 200),
so the time is the SDK's replay cost: parsing the request, answering every step from its memo
and serializing the output. Compared with the official ``inngest`` SDK on the same machine,
both called through their framework-agnostic handler (no HTTP server in the way).

Run: ``python bench/sdk_replay.py [--steps 10 100 1000] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
import warnings
from typing import Any

from pyngest.protocol import jcs

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import inngest
    from inngest._internal import comm_lib, server_lib

import pyngest
from pyngest.sdk.handler import CommHandler, Request


def body_for(n: int) -> bytes:
    steps = {}
    for i in range(n):
        steps[hashlib.sha1(b"s" if i == 0 else f"s:{i}".encode()).hexdigest()] = {"data": i}  # noqa: S324
    ev = {"name": "bench/run", "data": {}, "id": "01EV", "ts": 1_700_000_000_000, "user": {}}
    return jcs.dumps(
        {
            "event": ev,
            "events": [ev],
            "steps": steps,
            "ctx": {
                "run_id": "01HRUN",
                "attempt": 0,
                "max_attempts": 5,
                "disable_immediate_execution": False,
                "stack": {"stack": list(steps), "current": n},
                "use_api": False,
                "env": "",
                "step_id": "step",
            },
            "version": 2,
            "use_api": False,
        }
    )


def make_fn(sdk: Any, n: int) -> tuple[Any, Any]:
    client = sdk.Inngest(app_id="bench", is_production=False)

    @client.create_function(fn_id="f", trigger=sdk.TriggerEvent(event="bench/run"))
    async def f(ctx: Any) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step.run("s", lambda i=i: i)
        return total

    return client, f


def bench_ours(n: int, body: bytes, repeat: int, loop: asyncio.AbstractEventLoop) -> list[float]:
    client, f = make_fn(pyngest, n)
    handler = CommHandler(client=client, framework="bench", functions=[f])
    req = Request(method="POST", body=body, headers={}, query={"fnId": "bench-f", "stepId": "step"}, url="http://x/api/inngest")
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = loop.run_until_complete(handler.handle(req))
        out.append(time.perf_counter() - t0)
        assert res.status == 200 and int(res.body) == n * (n - 1) // 2, res.body[:200]
    return out


def bench_official(n: int, body: bytes, repeat: int, loop: asyncio.AbstractEventLoop) -> list[float]:
    client, f = make_fn(inngest, n)
    handler = comm_lib.CommHandler(
        client=client, enable_unauthed_sync=None, framework=server_lib.Framework.FAST_API,
        functions=[f], streaming=None,
    )
    out = []
    for _ in range(repeat):
        req = comm_lib.CommRequest(
            body=body, headers={}, public_path=None, query_params={"fnId": "bench-f", "stepId": "step"},
            raw_request=None, request_url="http://x/api/inngest", serve_origin=None, serve_path=None,
        )
        t0 = time.perf_counter()
        res = loop.run_until_complete(handler.post(req))
        out.append(time.perf_counter() - t0)
        assert res.status_code == 200 and res.body == n * (n - 1) // 2, res.body
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    loop = asyncio.new_event_loop()
    print(f"python {sys.version.split()[0]}, official inngest "
          f"{__import__('importlib.metadata').metadata.version('inngest')}, median of {args.repeat}")
    print(f"{'steps':>6} {'pyngest ms':>11} {'official ms':>12} {'speed-up':>9}")
    for n in args.steps:
        body = body_for(n)
        ours = statistics.median(bench_ours(n, body, args.repeat, loop)) * 1000
        theirs = statistics.median(bench_official(n, body, args.repeat, loop)) * 1000
        print(f"{n:>6} {ours:>11.3f} {theirs:>12.3f} {theirs / ours:>8.1f}x")


if __name__ == "__main__":
    main()
