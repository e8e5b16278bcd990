"""Upgrading to schema version 8 (branch auto-archive): a branch from before gets three days from
the upgrade (not an archive at the first start), one archived by hand and the other
environments get no date. SQLite here; PostgreSQL in tests/integration/cluster/test_migrations.py."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from pyngest.clock import TestClock
from pyngest.server.environments import BRANCH_ARCHIVE_MS
from pyngest.server.store.sqlite.store import SqliteStore

OLD_ENVS = [("b1", "preview", "branch", None), ("b2", "gone", "branch", 5), ("c1", "staging", "custom", None)]


async def test_branches_from_before_get_three_days_from_the_upgrade(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, TestClock(start_ms=1_800_000_000_000))
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "main.db", isolation_level=None) as conn:  # as version 7 had it
        conn.execute("ALTER TABLE envs DROP COLUMN deployed_ms")
        conn.execute("ALTER TABLE envs DROP COLUMN auto_archive_ms")
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        conn.executemany("INSERT INTO envs (id, name, kind, parent_id, archived_ms, created_ms) "
                         "VALUES (?, ?, ?, '', ?, 1)", OLD_ENVS)
    before = time.time_ns() // 1_000_000
    store = SqliteStore(tmp_path, TestClock(start_ms=1_800_000_000_000))
    await store.open()
    try:
        envs = {e.id: e for e in await store.list_envs()}
    finally:
        await store.close()
    after = time.time_ns() // 1_000_000
    auto = envs["b1"].auto_archive_ms
    assert auto is not None and before + BRANCH_ARCHIVE_MS - 1 <= auto <= after + BRANCH_ARCHIVE_MS + 1
    assert envs["b1"].archived_ms is None and envs["b1"].deployed_ms is None
    assert envs["b2"].auto_archive_ms is None and envs["b2"].archived_ms == 5
    assert envs["c1"].auto_archive_ms is None
