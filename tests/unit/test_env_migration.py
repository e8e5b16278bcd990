"""Upgrading a SQLite database made before environments: every existing row becomes the default
environment's, and app names and function slugs become unique per environment only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pyngest.clock import TestClock
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import AppRecord, FunctionRecord, RunQuery
from pyngest.server.store.sqlite.connection import SCHEMA_VERSION
from pyngest.server.store.sqlite.store import SqliteStore
from tests.sqlite_versions import as_version_3

NOW = 1_800_000_000_000


async def _store(path: Path) -> SqliteStore:
    store = SqliteStore(path, TestClock(start_ms=NOW))
    await store.open()
    return store


async def test_existing_rows_join_the_default_environment(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.close()
    with sqlite3.connect(tmp_path / "main.db", isolation_level=None) as conn:
        as_version_3(conn)
        conn.execute("INSERT INTO apps(id, name, created_ms, updated_ms) VALUES ('a1', 'shop', 1, 1)")
        conn.execute("INSERT INTO functions(id, app_id, slug, name, config, created_ms, updated_ms) "
                     "VALUES ('f1', 'a1', 'shop-order', 'order', '{}', 1, 1)")
        conn.execute("INSERT INTO events(internal_id, name, event_id, ts, received_ms, body) "
                     "VALUES ('e1', 'shop/order', 'e1', 1, 1, '{}')")
        conn.execute("INSERT INTO runs(id, fn_id, app_id, status, event_ids, queued_ms) "
                     "VALUES ('01J00000000000000000000000', 'f1', 'a1', 'Completed', '[\"e1\"]', 1)")
    store = await _store(tmp_path)
    try:
        version = await store.db.read(lambda c: c.execute("SELECT value FROM meta WHERE key='schema_version'")
                                      .fetchone()[0])
        assert version == str(SCHEMA_VERSION)
        assert [a.env_id for a in await store.list_apps()] == [DEFAULT_ENV]
        assert [f.env_id for f in await store.list_functions()] == [DEFAULT_ENV]
        assert [e.env_id for e in await store.list_events(None, 10)] == [DEFAULT_ENV]
        assert [r.env_id for r in await store.list_runs(RunQuery(env_id=DEFAULT_ENV))] == [DEFAULT_ENV]
        assert await store.list_runs(RunQuery(env_id="other")) == []
        assert [e.id for e in await store.list_envs()] == [DEFAULT_ENV]
        # the same app name and function slug in another environment
        await store.save_app(AppRecord("a2", "shop", "", env_id="other"))
        await store.save_functions("a2", [FunctionRecord("f2", "a2", "shop-order", "order", {}, env_id="other")], NOW)
        assert sorted(f.env_id for f in await store.list_functions()) == sorted([DEFAULT_ENV, "other"])
        with pytest.raises(sqlite3.IntegrityError):  # but not twice in one environment
            await store.save_app(AppRecord("a3", "shop", ""))
    finally:
        await store.close()
