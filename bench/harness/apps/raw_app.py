"""A scripted app without an SDK: the least an app can cost, so the figures are the server's.

    python -m bench.harness.apps.raw_app <port>

It answers each execution request of ``ten``/``one`` with the next ``StepRun`` (the step's
output inline, as an SDK does after running it) and, once every step is in the request's
memo, with 200 and the result. It records, per run, the time from its answer leaving to the
next request of that run arriving — the server's per-step overhead including loopback HTTP
both ways — served at ``GET /stats`` (and cleared by ``DELETE /stats``).
"""

from __future__ import annotations

import hashlib
import sys
import time

import orjson
from aiohttp import web

from bench.harness.notify import Notifier

HEADERS = {"X-Inngest-SDK": "bench-raw:v0", "x-inngest-req-version": "2",
           "Content-Type": "application/json"}
STEPS = {"ten": 10, "one": 1}
IDS = [hashlib.sha1(f"s{n}".encode()).hexdigest() for n in range(10)]


def register_payload(url: str) -> bytes:
    functions = [{
        "id": fn, "name": fn, "triggers": [{"event": f"bench/{fn}"}],
        "steps": {"step": {"id": "step", "name": "step",
                           "runtime": {"type": "http", "url": f"{url}?fnId={fn}&stepId=step"}}},
    } for fn in STEPS]
    return orjson.dumps({"appName": "bench-raw", "url": url, "sdk": "py:v0", "framework": "aiohttp",
                         "functions": functions})


class RawApp:
    def __init__(self) -> None:
        self.notifier = Notifier()
        self.sent: dict[str, float] = {}
        self.gaps_us: list[int] = []

    async def execute(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = orjson.loads(await request.read())
        fn = request.query.get("fnId", "")
        fn = fn.rsplit("-", 1)[-1]
        run_id = body["ctx"]["run_id"]
        last = self.sent.pop(run_id, None)
        if last is not None:
            self.gaps_us.append(int((now - last) * 1e6))
        done = len(body["steps"])
        if done >= STEPS[fn]:
            self.notifier.done(body["event"]["data"]["i"])
            return web.Response(body=b"45" if fn == "ten" else b"1", headers=HEADERS)
        op = [{"op": "StepRun", "id": IDS[done], "name": f"s{done}", "displayName": f"s{done}",
               "data": done}]
        resp = web.Response(body=orjson.dumps(op), status=206, headers=HEADERS)
        self.sent[run_id] = time.perf_counter()
        return resp

    async def stats(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.gaps_us = []
            return web.json_response({"ok": True})
        return web.Response(body=orjson.dumps({"gaps_us": self.gaps_us}), content_type="application/json")


def main() -> None:
    import uvloop

    app = RawApp()
    web_app = web.Application()
    web_app.router.add_post("/api/inngest", app.execute)
    web_app.router.add_get("/stats", app.stats)
    web_app.router.add_delete("/stats", app.stats)
    web_app.router.add_get("/healthz", lambda _r: web.json_response({"ok": True}))
    uvloop.install()
    web.run_app(web_app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
