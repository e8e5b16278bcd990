"""The SDK against a real pyngest server (subprocess), through real HTTP: the documented
Python examples, written with ``import pyngest as inngest``."""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

import fastapi
import flask
import pytest

import pyngest as inngest
import pyngest.fast_api
import pyngest.flask
from pyngest.experimental.dev_server import DevServer, serve_app

from .greet_flow import run_greet


def _client(srv: DevServer, app_id: str, **kw: Any) -> inngest.Inngest:
    return inngest.Inngest(app_id=app_id, is_production=False, api_base_url=srv.url, event_api_base_url=srv.url, **kw)


def test_quick_start(pyngest_server: DevServer) -> None:
    """getting-started__python-quick-start, with the import line changed."""
    inngest_client = _client(pyngest_server, "fast_api_example", logger=logging.getLogger("uvicorn"))

    @inngest_client.create_function(fn_id="my_function", trigger=inngest.TriggerEvent(event="app/my_function"))
    async def my_function(ctx: inngest.Context, step: inngest.Step) -> str:
        ctx.logger.info(ctx.event)
        return "done"

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, inngest_client, [my_function])
    with serve_app(app) as base:
        pyngest_server.sync(base + "/api/inngest")
        ids = inngest_client.send_sync(inngest.Event(name="app/my_function", data={"msg": "Hello!"}))
        run = pyngest_server.wait_for_run(ids[0])
    assert (run.status, run.output) == ("Completed", "done")


def test_durable_workflow_fastapi(pyngest_server: DevServer) -> None:
    """Steps with args, a retried step, sleep, wait_for_event, invoke, parallel, send_event,
    a caught StepError and on_failure, end to end."""
    client = _client(pyngest_server, "workflow")
    seen: dict[str, Any] = {"attempts": [], "failures": [], "sent": []}

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="app/child"))
    async def child(ctx: inngest.Context, step: inngest.Step) -> Any:
        return {"doubled": ctx.event.data["n"] * 2}

    @client.create_function(fn_id="on-sent", trigger=inngest.TriggerEvent(event="app/sent"))
    async def on_sent(ctx: inngest.Context, step: inngest.Step) -> None:
        seen["sent"].append(ctx.event.data)

    async def failure_handler(ctx: inngest.Context, step: inngest.Step) -> None:
        seen["failures"].append(ctx.event.data["error"]["message"])

    @client.create_function(fn_id="doomed", trigger=inngest.TriggerEvent(event="app/doomed"), retries=0,
                            on_failure=failure_handler)
    async def doomed(ctx: inngest.Context, step: inngest.Step) -> None:
        raise inngest.NonRetriableError("doomed on purpose")

    @client.create_function(fn_id="main", trigger=inngest.TriggerEvent(event="app/main"), retries=2)
    async def main(ctx: inngest.Context, step: inngest.Step) -> Any:
        def flaky(x: int) -> int:
            seen["attempts"].append(ctx.attempt)
            if ctx.attempt == 0:
                raise ValueError("first attempt fails")
            return x + 1

        a = await step.run("flaky", flaky, 41)
        await step.sleep("nap", datetime.timedelta(seconds=1))
        reply = await step.wait_for_event(
            "wait", event="app/reply", if_exp="async.data.key == event.data.key", timeout=datetime.timedelta(seconds=30)
        )
        invoked = await step.invoke("invoke", function=child, data={"n": 21})
        pair = await step.parallel((lambda: step.run("p1", lambda: "x"), lambda: step.run("p2", lambda: "y")))
        ids = await step.send_event("send", inngest.Event(name="app/sent", data={"from": "main"}))
        try:
            await step.run("always-fails", lambda: 1 / 0)
        except inngest.StepError as err:
            caught = err.name
        return {"a": a, "reply": reply.data["key"] if reply else None, "invoked": invoked,
                "pair": list(pair), "sent": len(ids), "caught": caught}

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [child, on_sent, doomed, main])
    with serve_app(app) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/main", data={"key": "k1"}))
        stop = threading.Event()

        def reply_until_done() -> None:
            # the wait only sees events sent after it started: keep replying until the run ends
            while not stop.is_set():
                client.send_sync(inngest.Event(name="app/reply", data={"key": "k1"}))
                stop.wait(0.3)

        replier = threading.Thread(target=reply_until_done, daemon=True)
        replier.start()
        try:
            run = pyngest_server.wait_for_run(eid, timeout_s=60)
        finally:
            stop.set()
            replier.join()
        (doomed_id,) = client.send_sync(inngest.Event(name="app/doomed"))
        failed = pyngest_server.wait_for_run(doomed_id)
        deadline = time.monotonic() + 20
        while not (seen["failures"] and seen["sent"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert run.status == "Completed", run.raw
    assert run.output == {"a": 42, "reply": "k1", "invoked": {"doubled": 42}, "pair": ["x", "y"], "sent": 1,
                          "caught": "ZeroDivisionError"}
    assert seen["attempts"][:2] == [0, 1]
    assert failed.status == "Failed"
    assert seen["failures"] == ["doomed on purpose"]
    assert seen["sent"] == [{"from": "main"}]


def test_wait_for_event_timeout_and_sync_flask(pyngest_server: DevServer) -> None:
    """A Flask app with plain (non-async) handlers; a wait that times out returns None."""
    client = _client(pyngest_server, "flask-app")

    @client.create_function(fn_id="waits", trigger=inngest.TriggerEvent(event="app/flask"))
    def waits(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        got = step.wait_for_event("never", event="app/never", timeout=datetime.timedelta(seconds=1))
        total = step.run("sum", lambda: sum(ctx.event.data["nums"]))
        return {"got": got, "total": total}

    app = flask.Flask(__name__)
    pyngest.flask.serve(app, client, [waits])
    with serve_app(app, wsgi=True) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/flask", data={"nums": [1, 2, 3]}))
        run = pyngest_server.wait_for_run(eid)
    assert (run.status, run.output) == ("Completed", {"got": None, "total": 6})


def test_django_app(pyngest_server: DevServer) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    from pyngest import django as pyngest_django
    from tests.unit.sdk import django_urls

    django_urls.setup()
    client = _client(pyngest_server, "django-app")

    @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="app/django"))
    def hello(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        return step.run("greet", lambda: f"hello {ctx.event.data['name']}")

    django_urls.add(pyngest_django.serve(client, [hello], serve_path="/dj/api/inngest"))
    with serve_app(WSGIHandler(), wsgi=True) as base:
        pyngest_server.sync(base + "/dj/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/django", data={"name": "Ada"}))
        run = pyngest_server.wait_for_run(eid)
    assert (run.status, run.output) == ("Completed", "hello Ada")


def test_send_is_idempotent_across_retries(pyngest_server: DevServer) -> None:
    """Two sends with the same seed header make the same event ids (a retried send after a lost
    response does not create the events twice)."""
    import httpx

    from pyngest.protocol.ids import new_seed

    seed = new_seed()
    body = [{"name": "app/seeded", "data": {}}, {"name": "app/seeded", "data": {"i": 2}}]
    url = f"{pyngest_server.url}/e/any-key"
    a = httpx.post(url, json=body, headers={"x-inngest-event-id-seed": seed}).json()
    b = httpx.post(url, json=body, headers={"x-inngest-event-id-seed": seed}).json()
    assert a["ids"] == b["ids"] and len(set(a["ids"])) == 2


@pytest.mark.parametrize("framework", ["fastapi"])
def test_signed_production_mode(framework: str) -> None:
    """`pyngest start` with a signing key: requests are signed both ways and verified."""
    key = "signkey-test-" + "12" * 32
    srv = DevServer(signing_key=key, event_key="ek")
    srv.start()
    try:
        client = inngest.Inngest(app_id="prod-app", is_production=True, signing_key=key, event_key="ek",
                                 api_base_url=srv.url, event_api_base_url=srv.url)

        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="app/prod"))
        async def f(ctx: inngest.Context, step: inngest.Step) -> str:
            return await step.run("s", lambda: "signed ok")

        app = fastapi.FastAPI()
        pyngest.fast_api.serve(app, client, [f])
        with serve_app(app) as base:
            srv.sync(base + "/api/inngest")
            (eid,) = client.send_sync(inngest.Event(name="app/prod"))
            run = srv.wait_for_run(eid)
        assert (run.status, run.output) == ("Completed", "signed ok")
    finally:
        srv.stop()


def test_invoke_across_apps_and_cancel(pyngest_server: DevServer) -> None:
    """reference__python__steps__invoke_by_id (across apps) and cancel-on-events, for real."""
    inngest_client_1 = _client(pyngest_server, "app-1")
    inngest_client_2 = _client(pyngest_server, "app-2")

    @inngest_client_1.create_function(fn_id="fn-1", trigger=inngest.TriggerEvent(event="app/fn-1"))
    async def fn_1(ctx: inngest.Context, step: inngest.Step) -> str:
        return "Hello!"

    @inngest_client_2.create_function(fn_id="fn-2", trigger=inngest.TriggerEvent(event="app/fn-2"))
    async def fn_2(ctx: inngest.Context, step: inngest.Step) -> Any:
        return await step.invoke_by_id("invoke", app_id="app-1", function_id="fn-1")

    @inngest_client_2.create_function(
        fn_id="schedule-reminder",
        trigger=inngest.TriggerEvent(event="tasks/reminder.created"),
        cancel=[inngest.Cancel(event="tasks/reminder.deleted", if_exp="async.data.reminderId == event.data.reminderId")],
    )
    async def reminder(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.sleep_until("sleep-until-remind-at-time", ctx.event.data["remind_at"])
        await step.run("send-reminder-push", lambda: None)

    app1, app2 = fastapi.FastAPI(), fastapi.FastAPI()
    pyngest.fast_api.serve(app1, inngest_client_1, [fn_1])
    pyngest.fast_api.serve(app2, inngest_client_2, [fn_2, reminder])
    with serve_app(app1) as base1, serve_app(app2) as base2:
        pyngest_server.sync(base1 + "/api/inngest")
        pyngest_server.sync(base2 + "/api/inngest")
        (eid,) = inngest_client_2.send_sync(inngest.Event(name="app/fn-2"))
        run = pyngest_server.wait_for_run(eid)
        assert (run.status, run.output) == ("Completed", "Hello!")
        remind_at = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
        (rid,) = inngest_client_2.send_sync(
            inngest.Event(name="tasks/reminder.created", data={"remind_at": remind_at, "reminderId": 5})
        )
        deadline = time.monotonic() + 10
        while not pyngest_server.runs(rid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let the run reach its sleep
        inngest_client_2.send_sync(inngest.Event(name="tasks/reminder.deleted", data={"reminderId": 5}))
        cancelled = pyngest_server.wait_for_run(rid)
    assert cancelled.status == "Cancelled"


def test_documented_conftest_dev_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """reference__python__guides__testing: ``dev_server.server.start()`` in ``pytest_configure``
    starts a server where a dev-mode app looks for it (``DEV_SERVER_PORT``, default 8288, as
    the official SDK's), so the app syncs to it with nothing but ``INNGEST_DEV`` set."""
    from pyngest.experimental import dev_server
    from pyngest.experimental.dev_server.server import DEFAULT_PORT, free_port

    monkeypatch.delenv("DEV_SERVER_PORT", raising=False)
    monkeypatch.delenv("DEV_SERVER_ENABLED", raising=False)
    assert DEFAULT_PORT == 8288 and DevServer.from_env().port == 8288
    monkeypatch.setenv("DEV_SERVER_ENABLED", "0")
    disabled = DevServer.from_env()
    disabled.start()
    assert not disabled.running
    disabled.stop()
    monkeypatch.delenv("DEV_SERVER_ENABLED")
    assert isinstance(dev_server.server, DevServer)

    port = free_port()  # 8288 itself may be taken on a shared machine
    monkeypatch.setenv("DEV_SERVER_PORT", str(port))
    monkeypatch.setenv("INNGEST_DEV", f"http://127.0.0.1:{port}")
    srv = DevServer.from_env()
    srv.start()
    try:
        assert srv.origin == f"http://127.0.0.1:{port}"
        client = inngest.Inngest(app_id="my-app")  # dev mode and URLs from INNGEST_DEV only
        assert run_greet(client, srv, "Alice") == ("Completed", "Hello, Alice!")
    finally:
        srv.stop()


def test_retried_send_after_lost_responses_stores_events_once(pyngest_server: DevServer) -> None:
    """The server stores a send but its answer is lost (a proxy turns it into a 502) twice; the
    SDK retries with the same x-inngest-event-id-seed, so the events exist once and start one
    run each, and the ids the SDK returns are the stored ones."""
    import httpx

    from tests.unit.sdk.harness import read_body, send_plain

    lost = {"left": 2, "seeds": []}

    async def lossy_proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.lower() != b"host"}
        lost["seeds"].append(headers.get("x-inngest-event-id-seed"))
        async with httpx.AsyncClient() as http:
            res = await http.post(pyngest_server.url + scope["path"], content=body, headers=headers)
        status, payload = res.status_code, res.content
        if lost["left"]:
            lost["left"] -= 1
            status, payload = 502, b"bad gateway"
        await send_plain(send, status, {}, payload)

    client = _client(pyngest_server, "lossy")
    client._sleep_sync = lambda s: None
    ran: list[str] = []

    @client.create_function(fn_id="count", trigger=inngest.TriggerEvent(event="app/lossy"))
    async def count(ctx: inngest.Context, step: inngest.Step) -> None:
        ran.append(ctx.event.data["n"])

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [count])
    with serve_app(app) as base, serve_app(lossy_proxy) as proxy:
        pyngest_server.sync(base + "/api/inngest")
        client._event_api_origin = proxy
        ids = client.send_sync([inngest.Event(name="app/lossy", data={"n": "a"}),
                                inngest.Event(name="app/lossy", data={"n": "b"})])
        runs = [pyngest_server.wait_for_run(i) for i in ids]
        stored = httpx.get(f"{pyngest_server.url}/v1/events", params={"name": "app/lossy"}).json()["data"]
        time.sleep(0.5)  # a duplicate event would have started a third run by now
    assert len(lost["seeds"]) == 3 and len(set(lost["seeds"])) == 1
    assert sorted(e["internal_id"] for e in stored) == sorted(ids)
    assert [r.status for r in runs] == ["Completed", "Completed"]
    assert sorted(ran) == ["a", "b"]


def test_pytest_plugin_as_documented(tmp_path: Any) -> None:
    """A user's test suite enabling ``pytest_plugins = ["pyngest.experimental.pytest_plugin"]``
    gets ``pyngest_server`` (a real server, no npm) and ``pyngest_client`` pointed at it."""
    import shutil
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    (tmp_path / "conftest.py").write_text('pytest_plugins = ["pyngest.experimental.pytest_plugin"]\n')
    shutil.copy(Path(__file__).with_name("greet_flow.py"), tmp_path / "greet_flow.py")
    (tmp_path / "test_user.py").write_text(textwrap.dedent('''
        from greet_flow import run_greet

        def test_greet(pyngest_server, pyngest_client):
            assert run_greet(pyngest_client, pyngest_server, "Ada") == ("Completed", "Hello, Ada!")
    '''))
    res = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


def test_streaming_responses_end_to_end(pyngest_server: DevServer, monkeypatch: pytest.MonkeyPatch,
                                        checkpointing: str) -> None:
    """``Streaming.FORCE``: every answer is a 201, keep-alive bytes while a step runs, then the
    envelope; the server unwraps it and the run goes on (steps, a retried error, the output)."""
    import asyncio

    from pyngest.sdk import handler

    monkeypatch.setattr(handler, "STREAM_KEEPALIVE_S", 0.02)  # keep-alive bytes during every step
    client = _client(pyngest_server, "streaming")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="app/stream"), retries=1)
    async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
        async def slow(x: int) -> int:
            await asyncio.sleep(0.1)
            if ctx.attempt == 0 and x == 2:
                raise ValueError("once")
            return x

        a = await step.run("a", slow, 1)
        b = await step.run("b", slow, 2)
        return a + b

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [f], streaming=inngest.Streaming.FORCE)
    statuses: list[int] = []
    first_chunks: list[bytes] = []

    async def watched(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def spy(message: dict[str, Any]) -> None:
            if scope.get("method") == "POST":
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                elif message["type"] == "http.response.body" and len(first_chunks) < len(statuses):
                    first_chunks.append(message.get("body", b""))
            await send(message)

        await app(scope, receive, spy)

    with serve_app(watched) as base:
        pyngest_server.sync(base + "/api/inngest")
        (eid,) = client.send_sync(inngest.Event(name="app/stream"))
        run = pyngest_server.wait_for_run(eid)
    assert (run.status, run.output) == ("Completed", 3)
    if checkpointing == "on":  # a and b failing once, b's retry, the output
        assert len(statuses) >= 3 and set(statuses) == {201}
        slow_requests = 2
    else:  # a, b failing once, b's retry, the output
        assert len(statuses) >= 4 and set(statuses) == {201}
        slow_requests = 3
    # the requests that ran a slow step sent keep-alive bytes before the envelope
    assert sum(chunk.strip() == b"" for chunk in first_chunks) >= slow_requests, first_chunks
