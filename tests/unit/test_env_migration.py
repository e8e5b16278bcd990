"""Upgrading a SQLite database made before environments: every existing row becomes the default
environment's, and app names and function slugs become unique per environment only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pyngest.clock import TestClock
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import RunQuery
from pyngest.server.store.sqlite.connection import SCHEMA_VERSION
from pyngest.server.store.sqlite.reads import env_terms, event_where, run_where
from pyngest.server.store.sqlite.store import SqliteStore
from tests.env_upgrade import check_upgraded
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
        conn.execute("INSERT INTO webhooks(id, key, name, created_ms, updated_ms) VALUES ('w1', 'k1', 'hook', 1, 1)")
    store = await _store(tmp_path)
    try:
        version = await store.db.read(lambda c: c.execute("SELECT value FROM meta WHERE key='schema_version'")
                                      .fetchone()[0])
        assert version == str(SCHEMA_VERSION)
        await check_upgraded(store, sqlite3.IntegrityError, NOW)
        # a webhook from before is the default environment's (migration 007)
        assert [(h.id, h.env_id) for h in await store.list_webhooks()] == [("w1", DEFAULT_ENV)]
    finally:
        await store.close()


async def test_another_environments_reads_search_the_env_indexes(tmp_path: Path) -> None:
    """The env indexes leave out the default environment's rows (no cost on a one-environment
    server); reads of another environment still find its rows through them."""
    store = await _store(tmp_path)
    try:
        where, args = event_where(None, None, None, env_id="other")
        assert "events_env" in await store.db.read(lambda c: " ".join(
            str(r[-1]) for r in c.execute(f"EXPLAIN QUERY PLAN SELECT seq FROM events WHERE {' AND '.join(where)} "
                                          "ORDER BY seq DESC LIMIT 5", args)))
        where, args = run_where(RunQuery(env_id="other"))
        assert "runs_env" in await store.db.read(lambda c: " ".join(
            str(r[-1]) for r in c.execute(f"EXPLAIN QUERY PLAN SELECT id FROM runs WHERE {' AND '.join(where)} "
                                          "ORDER BY id DESC LIMIT 5", args)))
        assert env_terms(DEFAULT_ENV) == ["env_id = ?"]
    finally:
        await store.close()
