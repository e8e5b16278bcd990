"""Realtime across processes: two ``pyngest dev`` processes on one PostgreSQL and Redis. A
subscriber connected to one process receives what a function publishes through the other,
and publishes sent alternately to both processes reach subscribers on both in the order they
were sent (every frame passes through Redis, whose one order every process sees)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from websockets.asyncio.client import connect as ws_connect

from pyngest.experimental import realtime
from tests import backends

from .harness import App, Server, new_tag
from .test_realtime import WAIT_S, take, token, ws_url

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    schema = backends.new_schema_name()
    backends.create_schema_sync(schema)
    uri = backends.postgres_uri(schema)
    root = tmp_path_factory.mktemp("realtime-cluster")
    nodes = []
    for i in range(2):
        workdir = root / f"node{i}"
        workdir.mkdir()
        nodes.append(Server(workdir, extra_args=["--postgres-uri", uri, "--redis-uri", backends.REDIS_URI]))
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def js_app(servers: list[Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = App("js", tmp_path_factory.mktemp("realtime-cluster-app"), servers[0].url)
    app.start()
    try:
        assert app.sync_error() is None
        yield app
    finally:
        app.stop()


async def test_a_subscriber_on_one_process_gets_a_function_publishing_through_another(
        servers: list[Server], js_app: App) -> None:
    a, b = servers
    channel = f"cluster:{uuid.uuid4().hex}"
    # the app's SDK publishes to process A (its INNGEST_BASE_URL); the subscriber is on B
    async with realtime.subscribe(token=token(b, channel, ["progress"]), api_base_url=b.url) as stream:
        event_id = await asyncio.to_thread(b.api().send, js_app.event("realtime-publish"),
                                           {"channel": channel, "count": 5, "tag": new_tag()})
        got = await take(stream, 5)
    run = await asyncio.to_thread(a.api().wait_run, event_id)
    assert run["status"] == "Completed"
    assert [m.data["i"] for m in got] == [0, 1, 2, 3, 4]
    assert {m.run_id for m in got} == {run["run_id"]}


async def test_publishes_alternating_between_processes_arrive_in_order_everywhere(servers: list[Server]) -> None:
    a, b = servers
    channel = f"cluster:{uuid.uuid4().hex}"
    jwt = token(a, channel, ["t"])  # a token from one process is good on the other
    async with ws_connect(ws_url(a, jwt)) as on_a, ws_connect(ws_url(b, jwt)) as on_b, \
            realtime.subscribe(token=jwt, api_base_url=b.url) as sse_on_b:
        for n in range(100):
            via = (a, b)[n % 2]
            res = await asyncio.to_thread(requests.post, f"{via.url}/v1/realtime/publish",
                                          params={"channel": channel, "topic": "t"}, json={"n": n}, timeout=10)
            assert res.status_code == 200, res.text
        from_a = [json.loads(await asyncio.wait_for(on_a.recv(), WAIT_S))["data"]["n"] for _ in range(100)]
        from_b = [json.loads(await asyncio.wait_for(on_b.recv(), WAIT_S))["data"]["n"] for _ in range(100)]
        via_sse = [m.data["n"] for m in await take(sse_on_b, 100)]
    assert from_a == from_b == via_sse == list(range(100))


def test_server_logs_no_realtime_redis_trouble(servers: list[Server]) -> None:
    for server in servers:
        assert server.proc is not None
        log = Path(server.workdir / "server.log").read_text()
        assert "not sent through redis" not in log and "redis lost" not in log, server.proc.tail()
