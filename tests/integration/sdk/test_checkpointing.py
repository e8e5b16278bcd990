"""Checkpointing (pyngest.sdk.checkpoint) against a real pyngest server: steps run back to back
in one request and are reported to ``/v1/checkpoint/{runId}/async``; the classic protocol takes
over for sleeps, retries, parallel steps, a refused checkpoint or a server without the API.

Every test counts the execution requests the app received, which is what checkpointing saves,
and checks what the user's code saw is the same either way.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import fastapi
import flask
import httpx
import pytest

import pyngest as inngest
import pyngest.fast_api
import pyngest.flask
from pyngest.experimental.dev_server import DevServer, serve_app
from tests.unit.sdk.harness import read_body, send_plain

# Each test sets checkpointing on its clients itself (the directory's on/off run is not needed).
CHECKPOINTING_MODES = ("on",)


def _client(srv: DevServer, app_id: str, origin: str | None = None, **kw: Any) -> inngest.Inngest:
    return inngest.Inngest(app_id=app_id, is_production=False, api_base_url=origin or srv.url,
                           event_api_base_url=srv.url, **kw)


class Counting:
    """An ASGI app in front of another that counts the execution requests (POSTs) it gets."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts.append(scope.get("query_string", b"").decode())
        await self.app(scope, receive, send)


class NoCheckpointAPI:
    """A proxy to the server that, like a server without checkpointing, has no checkpoint route."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refused = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if scope["path"].startswith("/v1/checkpoint/"):
            self.refused += 1
            await send_plain(send, 404, {"content-type": "text/plain"}, b"404 page not found")
            return
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["path"] + (f"?{query}" if query else "")
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() not in ("host", "content-length")}
        async with httpx.AsyncClient() as http:
            res = await http.request(scope["method"], url, headers=headers, content=body)
        await send_plain(send, res.status_code, {"content-type": res.headers.get("content-type", "application/json")},
                         res.content)


def _five_steps(client: inngest.Inngest, ran: list[str], event: str) -> Any:
    # each test its own event: the session's server is shared by the module's apps
    @client.create_function(fn_id="five", trigger=inngest.TriggerEvent(event=event))
    async def five(ctx: inngest.Context, step: inngest.Step) -> Any:
        total = 0.0
        for n in range(5):
            def body(n: int = n) -> float:
                ran.append(f"s{n}")
                return n + 0.5 if n == 4 else float(n)  # floats come back as the server sends them
            total += await step.run(f"s{n}", body)
        return {"total": total, "last_type": type(await step.run("t", lambda: 1.0)).__name__}

    return five


@pytest.mark.parametrize("enabled", [True, False])
def test_steps_run_back_to_back_in_one_request(store_server: DevServer, enabled: bool) -> None:
    pyngest_server = store_server
    client = _client(pyngest_server, f"cp-five-{enabled}", checkpointing=enabled)
    ran: list[str] = []
    fn = _five_steps(client, ran, f"app/five-{enabled}")
    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [fn])
    counting = Counting(app)
    with serve_app(counting) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name=f"app/five-{enabled}"))
        run = pyngest_server.wait_for_run(eid)
    assert (run.status, run.output) == ("Completed", {"total": 10.5, "last_type": "int"})
    assert ran == ["s0", "s1", "s2", "s3", "s4"]
    # six steps and the return: one request with checkpointing, seven without
    assert len(counting.posts) == (1 if enabled else 7)


def test_flask_checkpoints_plain_and_async_functions(store_server: DevServer) -> None:
    """A WSGI app: plain functions checkpoint with the blocking client, async ones on a loop of
    their own per request (its connections closed with it)."""
    pyngest_server = store_server
    client = _client(pyngest_server, "cp-flask")
    ran: list[str] = []

    @client.create_function(fn_id="sync-steps", trigger=inngest.TriggerEvent(event="app/sync-steps"))
    def sync_steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        return sum(step.run(f"s{n}", lambda n=n: ran.append(f"sync{n}") or n) for n in range(4))

    @client.create_function(fn_id="async-steps", trigger=inngest.TriggerEvent(event="app/async-steps"))
    async def async_steps(ctx: inngest.Context, step: inngest.Step) -> int:
        return sum([await step.run(f"s{n}", lambda n=n: ran.append(f"async{n}") or n) for n in range(4)])

    app = flask.Flask(__name__)
    pyngest.flask.serve(app, client, [sync_steps, async_steps])
    posts: list[str] = []

    @app.before_request
    def count() -> None:
        if flask.request.method == "POST":
            posts.append(flask.request.args.get("fnId", ""))

    with serve_app(app, wsgi=True) as base:
        pyngest_server.sync(base + "/api/inngest")
        outputs = []
        for name in ("app/sync-steps", "app/async-steps"):
            (eid,) = client.send_sync(inngest.Event(name=name))
            run = pyngest_server.wait_for_run(eid)
            outputs.append((run.status, run.output))
    assert outputs == [("Completed", 6), ("Completed", 6)]
    assert ran == [f"sync{n}" for n in range(4)] + [f"async{n}" for n in range(4)]
    assert len(posts) == 2, posts


def test_sleep_retry_and_parallel_fall_back_to_the_classic_protocol(store_server: DevServer) -> None:
    pyngest_server = store_server
    client = _client(pyngest_server, "cp-fallback")
    attempts: list[tuple[str, int]] = []

    @client.create_function(fn_id="mixed", trigger=inngest.TriggerEvent(event="app/mixed"), retries=2)
    async def mixed(ctx: inngest.Context, step: inngest.Step) -> Any:
        def record(name: str, fail_first: bool = False) -> str:
            attempts.append((name, ctx.attempt))
            if fail_first and ctx.attempt == 0:
                raise ValueError("first attempt fails")
            return name

        a = await step.run("a", record, "a")
        await step.sleep("nap", datetime.timedelta(seconds=1))
        b = await step.run("b", record, "b", True)
        c = await step.run("c", record, "c")
        pair = await step.parallel((lambda: step.run("p1", record, "p1"), lambda: step.run("p2", record, "p2")))
        d = await step.run("d", record, "d")
        return [a, b, c, *pair, d]

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [mixed])
    counting = Counting(app)
    with serve_app(counting) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/mixed"))
        run = pyngest_server.wait_for_run(eid, timeout_s=60)
    assert (run.status, run.output) == ("Completed", ["a", "b", "c", "p1", "p2", "d"])
    # every step body ran once, except b's retry, which got its own attempt number
    assert attempts == [("a", 0), ("b", 0), ("b", 1), ("c", 0), ("p1", 0), ("p2", 0), ("d", 0)]
    # 1: a (checkpointed), sleep. 2: b fails. 3: b's retry answers at once. 4: c (checkpointed),
    # the parallel plan. 5, 6: p1, p2 (planned). 7: d and the return (after the parallel steps,
    # the server asks for plans until the fan-in's discovery: d may be planned first).
    assert 7 <= len(counting.posts) <= 9, counting.posts


def test_a_server_without_the_checkpoint_api_gets_classic_answers(store_server: DevServer) -> None:
    pyngest_server = store_server
    proxy = NoCheckpointAPI(pyngest_server.url)
    with serve_app(proxy) as proxy_base:
        client = _client(pyngest_server, "cp-missing", origin=proxy_base)
        ran: list[str] = []
        fn = _five_steps(client, ran, "app/five-missing")
        app = fastapi.FastAPI()
        pyngest.fast_api.serve(app, client, [fn])
        counting = Counting(app)
        with serve_app(counting) as base:
            pyngest_server.sync(base + "/api/inngest")
            outputs = []
            for _ in range(2):
                (eid,) = client.send_sync(inngest.Event(name="app/five-missing"))
                outputs.append(pyngest_server.wait_for_run(eid).output)
    assert outputs == [{"total": 10.5, "last_type": "int"}] * 2
    assert ran == ["s0", "s1", "s2", "s3", "s4"] * 2
    assert len(counting.posts) == 14
    # asked once; the client then leaves the missing API alone
    assert proxy.refused == 1


def test_cancelled_between_steps_runs_no_further_step(store_server: DevServer) -> None:
    pyngest_server = store_server
    client = _client(pyngest_server, "cp-cancel")
    ran: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    @client.create_function(fn_id="cancel-me", trigger=inngest.TriggerEvent(event="app/cancel-me"))
    async def cancel_me(ctx: inngest.Context, step: inngest.Step) -> str:
        await step.run("first", lambda: ran.append("first"))

        def slow() -> None:
            ran.append("slow")
            entered.set()
            release.wait(10)

        await step.run("slow", slow)
        await step.run("never", lambda: ran.append("never"))
        return "finished"

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [cancel_me])
    with serve_app(app) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/cancel-me"))
        assert entered.wait(20)
        run_id = pyngest_server.runs(eid)[0]["run_id"]
        res = httpx.delete(f"{pyngest_server.url}/v1/runs/{run_id}", timeout=10)
        assert res.status_code < 300, res.text
        release.set()
        run = pyngest_server.wait_for_run(eid)
        time.sleep(0.5)  # the app's answer to the cancelled run has been discarded by now
    assert run.status == "Cancelled"
    assert ran == ["first", "slow"]


class Recorder(inngest.Middleware):
    calls: list[str] = []

    async def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        self.calls.append(f"transform_input:{len(steps)}")

    async def before_memoization(self) -> None:
        self.calls.append("before_memoization")

    async def after_memoization(self) -> None:
        self.calls.append("after_memoization")

    async def before_execution(self) -> None:
        self.calls.append("before_execution")

    async def after_execution(self) -> None:
        self.calls.append("after_execution")

    async def transform_output(self, result: inngest.TransformOutputResult) -> None:
        self.calls.append(f"transform_output:{result.step.id if result.step else 'fn'}")
        if result.step is not None and result.has_output():
            result.output = {"wrapped": result.output}  # what the server stores and sends back

    async def before_response(self) -> None:
        self.calls.append("before_response")


def _hooks_of_a_run(srv: DevServer, checkpointing: bool) -> tuple[list[str], Any, list[Any]]:
    Recorder.calls = []
    client = _client(srv, f"cp-mw-{checkpointing}", checkpointing=checkpointing, middleware=[Recorder])
    values: list[Any] = []

    @client.create_function(fn_id="mw", trigger=inngest.TriggerEvent(event=f"app/mw-{checkpointing}"))
    async def mw(ctx: inngest.Context, step: inngest.Step) -> Any:
        values.append(await step.run("one", lambda: 1))
        values.append(await step.run("two", lambda: 2))
        return "done"

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [mw])
    with serve_app(app) as base:
        srv.sync(base + "/api/inngest")
        # (send_sync would run the async middleware's send hooks, which plain code cannot)
        res = httpx.post(f"{srv.url}/e/key", json={"name": f"app/mw-{checkpointing}"}, timeout=10)
        (eid,) = res.json()["ids"]
        run = srv.wait_for_run(eid)
    return list(Recorder.calls), run.output, values


def test_middleware_hooks_are_the_same_with_and_without(store_server: DevServer) -> None:
    pyngest_server = store_server
    with_it = _hooks_of_a_run(pyngest_server, True)
    assert with_it == _hooks_of_a_run(pyngest_server, False)
    calls, output, values = with_it
    assert output == "done"
    assert calls.count("transform_input:0") == 1 and calls.count("before_response") == 3
    # the handler saw each step's output as the server gives it back (after transform_output)
    assert values[-2:] == [{"wrapped": 1}, {"wrapped": 2}]


def test_signed_production_server_takes_the_checkpoints() -> None:
    """``pyngest start`` with a signing key (and a rotated-out key first): checkpoints carry the
    hashed key as a Bearer token, the fallback key when the first is refused."""
    key = "signkey-test-" + "56" * 32
    old = "signkey-test-" + "78" * 32
    srv = DevServer(signing_key=key, event_key="ek")
    srv.start()
    try:
        client = inngest.Inngest(app_id="cp-signed", is_production=True, signing_key=old, signing_key_fallback=key,
                                 event_key="ek", api_base_url=srv.url, event_api_base_url=srv.url)
        ran: list[str] = []
        fn = _five_steps(client, ran, "app/five-signed")
        app = fastapi.FastAPI()
        pyngest.fast_api.serve(app, client, [fn])
        counting = Counting(app)
        with serve_app(counting) as base:
            srv.sync(base + "/api/inngest")
            (eid,) = client.send_sync(inngest.Event(name="app/five-signed"))
            run = srv.wait_for_run(eid)
    finally:
        srv.stop()
    assert (run.status, run.output) == ("Completed", {"total": 10.5, "last_type": "int"})
    assert ran == ["s0", "s1", "s2", "s3", "s4"]
    assert len(counting.posts) == 1
