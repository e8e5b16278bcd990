"""Losing PostgreSQL or Redis for a while: the Event API never says 200 for an event it could not
store, and the server carries on by itself when they are back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pyngest.protocol.step_ids import hash_step_id
from tests import backends
from tests.integration.cluster.harness import Cluster
from tests.integration.server.harness import Call, done, function_config, ops
from tests.proxy import Balancer, cable, through

ONE, S = hash_step_id("one"), hash_step_id("nap")


@pytest.fixture
def pg_proxy() -> Iterator[Balancer]:
    proxy = cable(backends.POSTGRES_URI)
    yield proxy
    proxy.stop()


@pytest.fixture
def redis_proxy() -> Iterator[Balancer]:
    proxy = cable(backends.REDIS_URI)
    yield proxy
    proxy.stop()


async def script(call: Call) -> tuple:
    steps = call.body["steps"]
    if call.body["event"]["data"].get("sleep") and S not in steps:
        return ops({"op": "Sleep", "id": S, "name": "1m"})
    if ONE not in steps:
        return ops({"op": "StepRun", "id": ONE, "name": "one", "data": call.body["event"]["data"]["n"]})
    return done(steps[ONE]["data"])


async def _count(uri: str, name: str) -> int:
    conn = await asyncpg.connect(uri)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE name = $1", name))
    finally:
        await conn.close()


async def test_losing_postgres_answers_503_and_carries_on_when_it_is_back(tmp_path: Path, pg_proxy: Balancer) -> None:
    cluster = Cluster(tmp_path, nodes=1, postgres=through(pg_proxy, backends.POSTGRES_URI))
    await cluster.start()
    try:
        cluster.app.script = script
        await cluster.register(function_config(cluster.app, "pg"))
        [before] = await cluster.send({"name": "test/pg", "data": {"n": 1}})
        assert (await cluster.run_ended(before))["output"] == 1
        [sleeping] = await cluster.send({"name": "test/pg", "data": {"n": 2, "sleep": True}})
        await cluster.settle()

        pg_proxy.cut()
        node = cluster.nodes[0]
        refused = await node.http.post("/e/key", json={"name": "test/lost", "data": {"n": 3}})
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["status"] == 503 and body["ids"] == [] and "not stored" in body["error"]
        assert "database is unavailable" in body["error"]
        await asyncio.sleep(2.0)  # long enough for the leases to lapse: the node lets its shards go
        assert not node.owned

        pg_proxy.mend()
        deadline = time.monotonic() + 30
        while True:  # the same process, no restart: it answers again once the database does
            resp = await node.http.post("/e/key", json={"name": "test/pg", "data": {"n": 4}})
            if resp.status_code == 200:
                break
            assert resp.status_code == 503 and time.monotonic() < deadline, resp.text
            await asyncio.sleep(0.2)
        [after] = resp.json()["ids"]
        assert (await cluster.run_ended(after))["output"] == 4
        await cluster.balanced()
        await cluster.advance(60_000)
        assert (await cluster.run_ended(sleeping))["output"] == 2
        assert await _count(cluster.uri, "test/lost") == 0  # refused means not stored
    finally:
        await cluster.stop()


async def test_losing_redis_changes_nothing_but_latency(tmp_path: Path, redis_proxy: Balancer) -> None:
    cluster = Cluster(tmp_path, nodes=2, redis=through(redis_proxy, backends.REDIS_URI))
    await cluster.start()
    try:
        cluster.app.script = script
        await cluster.register(function_config(cluster.app, "redis"))
        assert all(n.service.cluster.notifier.connected for n in cluster.nodes)  # type: ignore[union-attr]
        redis_proxy.cut()
        ids = []
        for n in range(10):
            ids += await cluster.send({"name": "test/redis", "data": {"n": n}}, via=n % 2)
        for n, eid in enumerate(ids):
            assert (await cluster.run_ended(eid, via=(n + 1) % 2))["output"] == n
        redis_proxy.mend()
        deadline = time.monotonic() + 20
        while not all(n.service.cluster.notifier.connected for n in cluster.nodes):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the nodes did not reconnect to Redis"
            await asyncio.sleep(0.1)
        [eid] = await cluster.send({"name": "test/redis", "data": {"n": 99}}, via=1)
        assert (await cluster.run_ended(eid))["output"] == 99
    finally:
        await cluster.stop()


async def test_a_database_of_a_newer_pyngest_is_refused_with_a_message(tmp_path: Path) -> None:
    from pyngest.clock import RealClock
    from pyngest.server.store.postgres.migrate import SchemaError
    from pyngest.server.store.postgres.store import PostgresStore

    schema = backends.new_schema_name()
    await backends.create_schema(schema)
    store = PostgresStore(backends.postgres_uri(schema), RealClock())
    await store.open()  # creates the schema
    await store.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    await store.close()
    again = PostgresStore(backends.postgres_uri(schema), RealClock())
    with pytest.raises(SchemaError, match="schema version 99, newer than this pyngest understands"):
        await again.open()
