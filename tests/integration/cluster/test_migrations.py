"""Upgrading a PostgreSQL database made before environments (schema version 2): every existing
row becomes the default environment's, and names are unique per environment only. And one made
before branch auto-archive (version 7): its branches get three days from the upgrade."""

from __future__ import annotations

import time
from importlib import resources

import asyncpg

from pyngest.clock import TestClock
from pyngest.server.environments import BRANCH_ARCHIVE_MS
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.postgres.migrate import SCHEMA_VERSION
from pyngest.server.store.postgres.store import PostgresStore
from tests import backends
from tests.env_upgrade import check_upgraded


async def test_a_version_2_database_gets_environments() -> None:
    schema = backends.new_schema_name()
    await backends.create_schema(schema)
    uri = backends.postgres_uri(schema)
    conn = await asyncpg.connect(uri)
    try:  # what pyngest with schema version 2 made
        migrations = resources.files("pyngest.server.store.postgres").joinpath("migrations")
        async with conn.transaction():
            for version in (1, 2):
                await conn.execute(migrations.joinpath(f"{version:03d}.sql").read_text())
            await conn.executemany("INSERT INTO meta (key, value) VALUES ($1, $2)", [
                ("cluster_id", "c"), ("shards", "4"), ("registry_version", "0"), ("schema_version", "2")])
            await conn.execute("INSERT INTO apps (id, name, created_ms, updated_ms) VALUES ('a1', 'shop', 1, 1)")
            await conn.execute("INSERT INTO functions (id, app_id, slug, name, config, created_ms, updated_ms) "
                               "VALUES ('f1', 'a1', 'shop-order', 'order', '{}', 1, 1)")
            await conn.execute("INSERT INTO events (internal_id, name, event_id, ts, received_ms, body) "
                               "VALUES ('e1', 'shop/order', 'e1', 1, 1, '{}')")
            await conn.execute("INSERT INTO runs (id, shard, fn_id, app_id, status, event_ids, queued_ms) "
                               "VALUES ('01J00000000000000000000000', 0, 'f1', 'a1', 'Completed', '[\"e1\"]', 1)")
    finally:
        await conn.close()
    store = PostgresStore(uri, TestClock(start_ms=1_800_000_000_000), shards=4)
    await store.open()
    try:
        assert await store.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == str(SCHEMA_VERSION)
        await check_upgraded(store, asyncpg.UniqueViolationError, 1_800_000_000_000)
    finally:
        await store.close()


async def test_a_version_6_database_gives_its_webhooks_the_default_environment() -> None:
    schema = backends.new_schema_name()
    await backends.create_schema(schema)
    uri = backends.postgres_uri(schema)
    conn = await asyncpg.connect(uri)
    try:  # what pyngest with schema version 6 made: webhooks without an environment
        migrations = resources.files("pyngest.server.store.postgres").joinpath("migrations")
        async with conn.transaction():
            for version in range(1, 7):
                await conn.execute(migrations.joinpath(f"{version:03d}.sql").read_text())
            await conn.executemany("INSERT INTO meta (key, value) VALUES ($1, $2)", [
                ("cluster_id", "c"), ("shards", "4"), ("registry_version", "0"), ("schema_version", "6")])
            await conn.execute("INSERT INTO webhooks (id, key, name, created_ms, updated_ms) "
                               "VALUES ('w1', 'k1', 'hook', 1, 1)")
    finally:
        await conn.close()
    store = PostgresStore(uri, TestClock(start_ms=1_800_000_000_000), shards=4)
    await store.open()
    try:
        assert await store.fetchval("SELECT value FROM meta WHERE key = 'schema_version'") == str(SCHEMA_VERSION)
        assert [(h.id, h.env_id) for h in await store.list_webhooks()] == [("w1", DEFAULT_ENV)]
    finally:
        await store.close()


async def test_a_version_7_database_gets_branch_auto_archive() -> None:
    schema = backends.new_schema_name()
    await backends.create_schema(schema)
    uri = backends.postgres_uri(schema)
    store = PostgresStore(uri, TestClock(start_ms=1_800_000_000_000), shards=4)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(uri)
    try:  # as version 7 had it
        await conn.execute("ALTER TABLE envs DROP COLUMN deployed_ms, DROP COLUMN auto_archive_ms")
        await conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        await conn.executemany("INSERT INTO envs (id, name, kind, parent_id, archived_ms, created_ms) "
                               "VALUES ($1, $2, $3, '', $4, 1)",
                               [("b1", "preview", "branch", None), ("b2", "gone", "branch", 5),
                                ("c1", "staging", "custom", None)])
    finally:
        await conn.close()
    before = time.time_ns() // 1_000_000
    store = PostgresStore(uri, TestClock(start_ms=1_800_000_000_000), shards=4)
    await store.open()
    try:
        envs = {e.id: e for e in await store.list_envs()}
    finally:
        await store.close()
    after = time.time_ns() // 1_000_000
    auto = envs["b1"].auto_archive_ms
    # the database's clock, not the process's: allow for a little skew
    assert auto is not None and before - 5_000 <= auto - BRANCH_ARCHIVE_MS <= after + 5_000
    assert envs["b1"].archived_ms is None and envs["b2"].auto_archive_ms is None and envs["b2"].archived_ms == 5
    assert envs["c1"].auto_archive_ms is None
