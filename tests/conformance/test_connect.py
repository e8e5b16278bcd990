"""Connect: official SDK workers that dial the server's WebSocket gateway instead of serving
HTTP (the PyPI SDK's ``inngest.connect.connect``, the npm SDK's ``inngest/connect``).

The same cases as the HTTP apps (steps, sleeps, waits, invoke, retries, parallel steps) run
here against connect workers — only the transport differs — plus what is connect's own: two
workers of one app sharing the load within their capacity, a worker killed in the middle of a
step (its lease lapses, the step runs again on the other worker, once), a worker drained with
SIGTERM (its step finishes there; new steps go to the other), and invoke between a connect app
and an HTTP app, both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.connect.hub import LEASE_MS

from . import raw_worker
from .conftest import AppPool
from .harness import CONNECT_KINDS, Api, App, Server, free_port, new_tag, poll

# The HTTP apps' cases, collected again here against this module's `app`: connect workers.
from .test_failures import test_non_retriable_error, test_retries_then_success  # noqa: F401
from .test_steps import (  # noqa: F401
    test_parallel_steps,
    test_sleep,
    test_steps_and_memoization_with_repeated_ids,
)
from .test_waits import test_invoke_by_id, test_wait_for_event_fulfilled  # noqa: F401

pytestmark = pytest.mark.conformance

# A killed worker's step comes back after its lease (20 s) lapses, then the retry interval (1 s).
LEASE_S = LEASE_MS // 1000
LEASE_WAIT = 90.0


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    # the gateway on a port of its own, as `--port + 1` is by default (a free one here)
    srv = Server(workdir / "server", extra_args=["--connect-gateway-port", str(free_port())])
    srv.workdir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module", params=CONNECT_KINDS)
def app(request: pytest.FixtureRequest, apps: AppPool) -> App:
    return apps.get(request.param)


def _worker(server: Server, workdir: Path, kind: str, app_id: str, prefix: str, **env: str) -> App:
    """One more worker process; several share an app id and event prefix."""
    w = App(kind, workdir, server.url, app_id=app_id, env={"CONFORMANCE_PREFIX": prefix, **env})
    w.start()
    return w


@pytest.fixture
def pair(request: pytest.FixtureRequest, server: Server, workdir: Path) -> Iterator[list[App]]:
    """Two workers of a fresh app: of the kind the test gives (or (kind, max concurrency))."""
    kind, limit = request.param if isinstance(request.param, tuple) else (request.param, None)
    tag = new_tag()
    extra = {"CONNECT_MAX_CONCURRENCY": limit} if limit else {}
    workers = [_worker(server, workdir, kind, f"cx-{tag}", f"cx-{tag}", **extra) for _ in range(2)]
    yield workers
    for w in workers:
        w.stop()


def _observed(workers: list[App], **match: Any) -> list[dict[str, Any]]:
    return sorted((o for w in workers for o in w.observations(**match)), key=lambda o: o["t"])


def _slow_step_started(pair: list[App], api: Api) -> tuple[str, str, App, App]:
    """A 3-second step has started: (its tag, its run, the worker running it, the other)."""
    tag = new_tag()
    run_id = api.wait_runs(api.send(pair[0].event("slow-step"), {"tag": tag, "seconds": 3}))[0]["run_id"]
    first = poll(lambda: _observed(pair, kind="step-start", tag=tag), what="the step to start")[0]
    running = next(w for w in pair if w.instance == first["instance"])
    return tag, run_id, running, next(w for w in pair if w is not running)


def test_worker_is_listed_with_its_sdk_and_apps(app: App, api: Api) -> None:
    conns = app.connections()
    mine = [c for c in conns if c["instance_id"] == app.instance]
    assert len(mine) == 1, conns
    conn = mine[0]
    assert conn["status"] == "READY"
    assert conn["apps"] == [app.id]
    assert conn["sdk_language"] == {"js_connect": "typescript"}.get(app.kind, "py")
    listed = {a["name"]: a for a in api.session.get(f"{api.url}/v1/apps", timeout=10).json()["data"]}
    assert listed[app.id]["framework"] == "connect", listed[app.id]


def test_invoke_from_a_connect_app_to_an_http_app(app: App, api: Api, apps: AppPool) -> None:
    http_app = apps.get("py_fastapi")
    tag = new_tag()
    run = api.wait_run(api.send(app.event("invoke-other"),
                                {"tag": tag, "app": http_app.id, "fn": "invoke-child", "x": 5}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"result": {"doubled": 10}}
    assert [o["step"] for o in http_app.observations(kind="step", fn="invoke-child", tag=tag)] == ["double"]


@pytest.fixture(scope="module")
def invoker(server: Server, workdir: Path) -> Iterator[App]:
    """An HTTP app (the official PyPI SDK) that also serves the connect tests' functions: its
    ``invoke-other`` invokes another app's function."""
    http_app = App("py_fastapi", workdir, server.url, app_id="cx-http-invoker",
                   env={"CONFORMANCE_CONNECT_FUNCTIONS": "1", "CONFORMANCE_PREFIX": "cx-http-invoker"})
    http_app.start()
    try:
        assert http_app.sync_error() is None
        yield http_app
    finally:
        http_app.stop()


def test_invoke_from_an_http_app_to_a_connect_app(app: App, api: Api, invoker: App) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(invoker.event("invoke-other"),
                                {"tag": tag, "app": app.id, "fn": "invoke-child", "x": 7}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"result": {"doubled": 14}}
    # the child ran on the connect worker
    assert [o["step"] for o in app.observations(kind="step", fn="invoke-child", tag=tag)] == ["double"]


@pytest.mark.parametrize("pair", [(kind, "1") for kind in CONNECT_KINDS], indirect=True, ids=CONNECT_KINDS)
def test_two_workers_share_the_load_within_their_capacity(pair: list[App], api: Api) -> None:
    tag = new_tag()
    runs = [api.send(pair[0].event("slow-step"), {"tag": f"{tag}-{i}", "seconds": 1}) for i in range(4)]
    for event_id in runs:
        assert api.wait_run(event_id)["status"] == "Completed"
    by_instance: dict[str, list[tuple[float, float]]] = {}
    for w in pair:
        starts = [o for o in w.observations(kind="step-start", fn="slow-step") if o["tag"].startswith(tag)]
        ends = {o["run_id"]: o["t"] for o in w.observations(kind="step-end", fn="slow-step")}
        by_instance[w.instance] = [(s["t"], ends[s["run_id"]]) for s in starts]
    # both workers got steps: 2 each, as each can hold only one at a time
    assert sorted(len(v) for v in by_instance.values()) == [2, 2], by_instance
    for spans in by_instance.values():  # never two at once on one worker (capacity 1)
        spans.sort()
        assert all(a[1] <= b[0] + 0.05 for a, b in zip(spans, spans[1:], strict=False)), spans


@pytest.mark.parametrize("pair", CONNECT_KINDS, indirect=True)
def test_worker_killed_mid_step_its_step_completes_on_the_other(pair: list[App], api: Api) -> None:
    tag, run_id, victim, survivor = _slow_step_started(pair, api)
    victim.proc.kill9()  # type: ignore[union-attr]
    run = api.wait_ended(run_id, timeout=LEASE_WAIT)
    assert run["status"] == "Completed", run
    assert run["output"]["instance"] == survivor.instance
    # the step ran once per attempt: started on the victim, then once on the survivor
    starts = _observed(pair, kind="step-start", tag=tag)
    assert [s["instance"] for s in starts] == [victim.instance, survivor.instance], starts
    assert [e["instance"] for e in _observed(pair, kind="step-end", tag=tag)] == [survivor.instance]


@pytest.mark.parametrize("pair", CONNECT_KINDS, indirect=True)
def test_sigterm_drains_a_worker(pair: list[App], api: Api) -> None:
    tag, run_id, draining, other = _slow_step_started(pair, api)
    assert draining.proc is not None and draining.proc.popen is not None
    draining.proc.popen.terminate()  # SIGTERM: the SDK sends WORKER_PAUSE and finishes its step
    poll(lambda: [c for c in other.connections() if c["instance_id"] == draining.instance
                  and c["status"] == "DRAINING"] or not draining.connected(),
         what="the server to see the worker draining")
    later = [api.send(pair[0].event("who"), {"tag": f"{tag}-later-{i}"}) for i in range(3)]
    run = api.wait_ended(run_id)
    assert run["status"] == "Completed", run
    assert run["output"]["instance"] == draining.instance  # finished where it started
    assert [e["instance"] for e in _observed(pair, kind="step-end", tag=tag)] == [draining.instance]
    for event_id in later:
        assert api.wait_run(event_id)["output"]["instance"] == other.instance
    poll(lambda: not draining.proc.alive(), what="the drained worker to exit")  # type: ignore[union-attr]


def test_a_reply_after_the_connection_went_away_arrives_through_flush_or_a_new_connection(
        server: Server, api: Api) -> None:
    app = f"cx-raw-{new_tag()}"
    fns = [raw_worker.function(app, "fn", f"{app}/go")]

    async def scenario() -> list[str]:
        ws = await raw_worker.open_worker(server.url, app, fns, "raw-1")
        ended = []
        for via in ("flush", "new connection"):
            event_id = api.send(f"{app}/go", {"via": via})
            req = await raw_worker.next_request(ws)
            await ws.close()  # the connection is gone while the step "runs"
            reply = raw_worker.done(req, {"via": via})
            if via == "flush":
                res = requests.post(f"{server.url}/v0/connect/flush", data=reply.SerializeToString(),
                                    headers={"content-type": "application/protobuf"}, timeout=10)
                assert res.status_code == 200, res.text
                assert pb.FlushResponse.FromString(res.content).request_id == req.request_id
                ws = await raw_worker.open_worker(server.url, app, fns, "raw-1")  # back for the next
            else:
                ws = await raw_worker.open_worker(server.url, app, fns, "raw-1")
                await ws.send(raw_worker.frame(pb.WORKER_REPLY, reply))
                ack = pb.ConnectMessage.FromString(await ws.recv())
                assert ack.kind == pb.WORKER_REPLY_ACK
            ended.append(event_id)
        await ws.close()
        return ended

    for event_id, via in zip(asyncio.run(scenario()), ("flush", "new connection"), strict=True):
        run = api.wait_run(event_id)
        assert run["status"] == "Completed" and run["output"] == {"via": via}, run


def test_a_worker_with_invalid_functions_is_refused_with_the_reason(server: Server, api: Api) -> None:
    app = f"cx-bad-{new_tag()}"
    bad = [{"id": f"{app}-fn", "name": "fn", "triggers": [{"event": f"{app}/go", "expression": "event.data.x =="}],
            "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "ws", "url": "ws://connect"}}}}]

    async def scenario() -> tuple[int, str, int | None]:
        ws, answer = await raw_worker.handshake(server.url, app, bad, "bad-1")
        err = pb.SystemError.FromString(answer.payload)
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            return answer.kind, err.message, closed.rcvd.code if closed.rcvd else None
        return answer.kind, err.message, None

    kind, message, code = asyncio.run(scenario())
    assert kind == pb.SYNC_FAILED and code == 4001
    assert "invalid" in message and "expression" in message, message
    listed = {a["name"] for a in api.session.get(f"{api.url}/v1/apps", timeout=10).json()["data"]}
    assert app not in listed


def test_a_step_longer_than_its_lease_is_kept_by_extensions(app: App, api: Api) -> None:
    """25 s > the 20 s lease: the worker's extensions (every 5 s) keep the step its own, so it
    runs once, on its first attempt."""
    tag = new_tag()
    run = api.wait_run(api.send(app.event("slow-step"), {"tag": tag, "seconds": LEASE_S + 5}))
    assert run["status"] == "Completed", run
    assert run["output"]["attempt"] == 0
    assert [s["attempt"] for s in app.observations(kind="step-start", tag=tag)] == [0]
