"""The connect hub on a test clock: which worker gets a request (capacity, least loaded,
draining), leases (extension, lapse), and one outcome per attempt (a late reply is dropped)."""

from __future__ import annotations

import asyncio
from typing import Any

from pyngest.clock import TestClock
from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.connect.hub import LEASE_MS, ConnectHub, Worker, connect_url, parse_connect_url
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.registry import Registry


class FakeRegistry:
    def find_function(self, ident: str, env_id: str) -> Any:
        return None


def _hub(clock: TestClock) -> ConnectHub:
    registry: Registry = FakeRegistry()  # type: ignore[assignment]
    return ConnectHub(clock, registry)


def _worker(hub: ConnectHub, wid: str, capacity: int | None = None,
            env_id: str = DEFAULT_ENV) -> list[pb.GatewayExecutorRequestData]:
    got: list[pb.GatewayExecutorRequestData] = []

    async def send(data: bytes) -> None:
        msg = pb.ConnectMessage.FromString(data)
        if msg.kind == pb.GATEWAY_EXECUTOR_REQUEST:
            got.append(pb.GatewayExecutorRequestData.FromString(msg.payload))

    async def close() -> None:
        return None

    hub.add(Worker(id=wid, instance_id=wid, apps={"app": f"app-id-{env_id}"}, send=send, close=close,
                   env_id=env_id, sdk_language="py", sdk_version="0.5.19", capacity=capacity))
    return got


def _execute(hub: ConnectHub, run: str, env_id: str = DEFAULT_ENV) -> asyncio.Task[Any]:
    return asyncio.ensure_future(hub.execute(url=connect_url("app", "app-fn"), step_id="step", body=b"{}",
                                             run_id=run, job_id=f"job-{run}", env_id=env_id))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_connect_url_round_trip() -> None:
    assert parse_connect_url(connect_url("my app/1", "my-app-fn")) == ("my app/1", "my-app-fn")
    assert parse_connect_url("http://localhost/api/inngest") is None


async def test_requests_spread_over_workers_within_their_capacity() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    a, b = _worker(hub, "a", capacity=1), _worker(hub, "b", capacity=1)
    tasks = [_execute(hub, f"r{i}") for i in range(3)]
    await _settle()
    assert (len(a), len(b)) == (1, 1)  # the third waits: both are full
    first = a[0]
    assert hub.reply(pb.SDKResponse(request_id=first.request_id, status=pb.DONE, body=b'"ok"'))
    await _settle()
    assert len(a) == 2  # the slot a freed took the waiting request
    resp = await tasks[0]
    assert resp.status == 200 and resp.body == b'"ok"' and resp.sdk == "py:v0.5.19"
    for req in (b[0], a[1]):
        hub.reply(pb.SDKResponse(request_id=req.request_id, status=pb.NOT_COMPLETED, body=b"[]"))
    assert [t.status for t in await asyncio.gather(*tasks[1:])] == [206, 206]


async def test_a_draining_worker_gets_no_new_request() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    a, b = _worker(hub, "a"), _worker(hub, "b")
    hub.drain("a")
    tasks = [_execute(hub, f"r{i}") for i in range(3)]
    await _settle()
    assert (len(a), len(b)) == (0, 3)
    for req in b:
        hub.reply(pb.SDKResponse(request_id=req.request_id, status=pb.DONE))
    await asyncio.gather(*tasks)


async def test_extended_lease_holds_a_lapsed_one_fails_the_attempt_once() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    got = _worker(hub, "a")
    task = _execute(hub, "r1")
    await _settle()
    req = got[0]
    clock.advance(LEASE_MS - 1)
    new_lease = hub.extend(req.request_id, req.lease_id)
    assert new_lease is not None and new_lease != req.lease_id
    assert hub.extend(req.request_id, req.lease_id) is None  # the old lease id is stale
    clock.advance(LEASE_MS - 1)
    await _settle()
    assert not task.done()  # extended: still the worker's
    clock.advance(2)  # no extension for a whole lease: the worker is gone
    resp = await task
    assert resp.status == 0 and resp.transport_error and "lease" in resp.transport_error
    # the worker's late reply answers nothing: the attempt already failed (and is retried)
    assert not hub.reply(pb.SDKResponse(request_id=req.request_id, status=pb.DONE))
    assert hub.extend(req.request_id, new_lease) is None


async def test_done_with_no_retry_is_the_npm_sdks_400() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    got = _worker(hub, "a")
    task = _execute(hub, "r1")
    await _settle()
    hub.reply(pb.SDKResponse(request_id=got[0].request_id, status=pb.DONE, no_retry=True, body=b"{}"))
    resp = await task
    assert resp.status == 400 and resp.no_retry


async def test_a_worker_asking_for_manual_readiness_gets_requests_after_worker_ready() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    got = _worker(hub, "a")
    hub.workers["a"].ready = False  # WORKER_CONNECT said worker_manual_readiness_ack
    task = _execute(hub, "r1")
    await _settle()
    assert got == []
    hub.mark_ready("a")
    await _settle()
    assert len(got) == 1
    hub.reply(pb.SDKResponse(request_id=got[0].request_id, status=pb.DONE))
    assert (await task).status == 200


async def test_one_app_in_two_environments_gets_each_environments_requests() -> None:
    """Same app name in production and a branch: each run goes to a worker of its own
    environment, with its environment's app id; a run of an environment without a worker waits
    rather than take another environment's."""
    clock = TestClock(0)
    hub = _hub(clock)
    prod, branch = _worker(hub, "p"), _worker(hub, "b", env_id="branch-env")
    tasks = [_execute(hub, "r-prod"), _execute(hub, "r-branch", "branch-env"), _execute(hub, "r-other", "other-env")]
    await _settle()
    assert [r.run_id for r in prod] == ["r-prod"] and [r.run_id for r in branch] == ["r-branch"]
    assert prod[0].env_id == DEFAULT_ENV and prod[0].app_id == f"app-id-{DEFAULT_ENV}"
    assert branch[0].env_id == "branch-env" and branch[0].app_id == "app-id-branch-env"
    assert not tasks[2].done()  # no worker in other-env: it waits for one
    other = _worker(hub, "o", env_id="other-env")
    await _settle()
    assert [r.run_id for r in other] == ["r-other"]
    for got in (prod, branch, other):
        hub.reply(pb.SDKResponse(request_id=got[0].request_id, status=pb.DONE, body=b"1"))
    assert [t.status for t in await asyncio.gather(*tasks)] == [200, 200, 200]
    assert [w.id for w in hub.workers_in("branch-env")] == ["b"]


async def test_a_reply_from_another_environment_answers_nothing() -> None:
    clock = TestClock(0)
    hub = _hub(clock)
    got = _worker(hub, "p")
    task = _execute(hub, "r1")
    await _settle()
    reply = pb.SDKResponse(request_id=got[0].request_id, status=pb.DONE, body=b"1")
    assert not hub.reply(reply, lambda env: env == "branch-env")
    assert hub.reply(reply, lambda env: env == DEFAULT_ENV)
    assert (await task).status == 200
