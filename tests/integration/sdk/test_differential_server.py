"""Differential test fed by a real pyngest server: every execution request the server sends
during real runs goes to the same functions built with the official ``inngest`` SDK and with
pyngest; both answers must match (status, compared headers, body).

The app the server calls is a tee: it forwards each request to both apps in process, compares
their answers and returns the official SDK's (the oracle) to the server, so the runs advance as
they would with the official SDK. ``tests/unit/sdk/test_differential.py`` does the same with a
simulated server; here the requests (ids, stacks, attempts, parallel plans, retries, batches,
invoke results, failure events) are the ones pyngest's server really sends.
"""

from __future__ import annotations

import time
from typing import Any

import fastapi
import httpx

import pyngest
import pyngest.experimental.ai
import pyngest.fast_api
from pyngest.experimental.dev_server import DevServer, serve_app
from tests.unit.sdk import scenarios
from tests.unit.sdk.harness import asgi_call, assert_same, read_body, send_plain
from tests.unit.sdk.official import inngest

# Functions whose runs finish in seconds and whose steps have no outside side effects (a sent
# event would be sent twice, once per SDK, and get two different ids).
TRIGGERED = [
    "hello", "steps", "flaky", "caught", "uncaught", "non-retriable", "fn-non-retriable",
    "fn-error", "parallel", "race", "invokes", "nested", "unserializable", "fn-unserializable",
    "with-failure", "batch",
]
# The tee compares pyngest's answer with the official SDK's request by request: pyngest answers
# the classic way here (conftest.py runs the directory's other tests with checkpointing on too).
CHECKPOINTING_MODES = ("off",)


class Tee:
    """An ASGI app that answers with the official app and checks pyngest's answer matches."""

    def __init__(self, official: Any, ours: Any) -> None:
        self.official = official
        self.ours = ours
        self.seen: list[tuple[str, int]] = []  # (fnId query, status) of every execution request
        self.mismatches: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode()
        path = scope["path"] + (f"?{query}" if query else "")
        method = scope["method"]
        if method == "PUT":  # sync: pyngest's app registers (one app, one registration)
            res = await asgi_call(self.ours, method, path, headers, body)
        else:
            res = await asgi_call(self.official, method, path, headers, body)
            ours = await asgi_call(self.ours, method, path, headers, body)
            try:
                assert_same(res, ours, f"{method} {path}")
            except AssertionError as err:
                self.mismatches.append(str(err))
            if method == "POST":
                fn_id = dict(p.partition("=")[::2] for p in query.split("&")).get("fnId", "")
                self.seen.append((fn_id, res.status))
        await send_plain(send, res.status, res.headers, res.body)


def _app(sdk: Any, ai: Any, fast_api: Any, srv: DevServer, **kw: Any) -> Any:
    client, fns = scenarios.build(sdk, ai, api_base_url=srv.url, event_api_base_url=srv.url, **kw)
    app = fastapi.FastAPI()
    fast_api.serve(app, client, [fns[i] for i in TRIGGERED])
    return app


def _differential_runs(srv: DevServer, send_key: str, **client_kw: Any) -> None:
    tee = Tee(_app(inngest, inngest.experimental.ai, inngest.fast_api, srv, **client_kw),
              _app(pyngest, pyngest.experimental.ai, pyngest.fast_api, srv, **client_kw))
    with serve_app(tee) as base:
        srv.sync(base + "/api/inngest")
        res = httpx.post(f"{srv.url}/e/{send_key}", json={"name": "app/test", "data": {"id": 7}}, timeout=10)
        (eid,) = res.json()["ids"]
        runs = srv.wait_for_runs(eid, count=len(TRIGGERED), timeout_s=90)
        # the on_failure handler runs after "with-failure" failed
        deadline = time.monotonic() + 30
        while ("diff-app-with-failure-failure", 200) not in tee.seen and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not tee.mismatches, "\n\n".join(tee.mismatches)
    assert len(runs) == len(TRIGGERED)
    assert {r.status for r in runs} == {"Completed", "Failed"}, [(r.run_id, r.status) for r in runs]
    served = {f"diff-app-{f}" for f in TRIGGERED} | {"diff-app-with-failure-failure"}
    assert {fn for fn, _ in tee.seen} == served
    # what the server sent: plans, retries and failures, not only straight runs
    statuses = [status for _, status in tee.seen]
    assert statuses.count(206) > 20 and 500 in statuses and 200 in statuses


def test_requests_from_a_real_server_get_the_same_answers(pyngest_server: DevServer) -> None:
    _differential_runs(pyngest_server, "key", is_production=False)


def test_signed_requests_from_a_real_server_get_the_same_answers() -> None:
    """``pyngest start`` with a signing key: both SDKs verify the server's signatures (ours also
    checks their age, PROTOCOL.md §3.3) and answer alike."""
    key = "signkey-test-" + "34" * 32
    srv = DevServer(signing_key=key, event_key="ek")
    srv.start()
    try:
        _differential_runs(srv, "ek", is_production=True, signing_key=key, event_key="ek")
    finally:
        srv.stop()
