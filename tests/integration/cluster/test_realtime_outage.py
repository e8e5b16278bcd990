"""Realtime when Redis goes away: publishing still answers, each process's own subscribers
still get what is published to it, the other processes' subscribers miss it (at-most-once, as
documented), and cross-process delivery resumes by itself once Redis is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyngest.experimental import realtime
from tests import backends
from tests.integration.cluster.harness import Cluster, Node
from tests.proxy import Balancer, cable, through


@pytest.fixture
def redis_proxy() -> Iterator[Balancer]:
    proxy = cable(backends.REDIS_URI)
    yield proxy
    proxy.stop()


def _relay_up(node: Node) -> bool:
    relay = node.service.realtime.relay
    return relay is not None and relay.connected.is_set()


async def _until(what: str, ok: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_losing_redis_keeps_local_delivery_and_recovers(tmp_path: Path, redis_proxy: Balancer) -> None:
    cluster = Cluster(tmp_path, nodes=2, redis=through(redis_proxy, backends.REDIS_URI))
    await cluster.start()
    a, b = cluster.nodes
    try:
        await _until("relays connected", lambda: _relay_up(a) and _relay_up(b))
        res = await a.http.post("/v1/realtime/token", json=[{"channel": "c", "name": "t"}])
        jwt = res.json()["jwt"]

        async def publish(n: int) -> None:
            res = await a.http.post("/v1/realtime/publish", params={"channel": "c", "topic": "t"}, json={"n": n})
            assert res.status_code == 200, res.text

        async def next_n(stream: realtime.Subscription) -> int:
            async for message in stream:
                return int(message.data["n"])
            raise AssertionError("the stream ended")

        async with realtime.subscribe(token=jwt, api_base_url=f"http://127.0.0.1:{a.port}") as on_a, \
                realtime.subscribe(token=jwt, api_base_url=f"http://127.0.0.1:{b.port}") as on_b:
            await publish(1)
            assert [await asyncio.wait_for(next_n(s), 20) for s in (on_a, on_b)] == [1, 1]

            redis_proxy.cut()
            await _until("relays noticed", lambda: not _relay_up(a) and not _relay_up(b))
            await publish(2)  # answered; only A's own subscriber can get it
            assert await asyncio.wait_for(next_n(on_a), 20) == 2

            redis_proxy.mend()
            await _until("relays reconnected", lambda: _relay_up(a) and _relay_up(b))
            await publish(3)
            # B never got 2: its next message is 3
            assert [await asyncio.wait_for(next_n(s), 20) for s in (on_a, on_b)] == [3, 3]
    finally:
        await cluster.stop()
