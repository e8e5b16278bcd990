"""Retention on SQLite: every delete is an index search, and the file gives the space back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pyngest.clock import TestClock
from pyngest.server.store.sqlite.connection import SCHEMA_VERSION
from pyngest.server.store.sqlite.store import SqliteStore
from tests.sqlite_versions import as_version_3

NOW = 1_800_000_000_000
DAY = 86_400_000


def _fill(conn: sqlite3.Connection, runs: int, *, ended_ms: int | None, prefix: str, step_bytes: int) -> None:
    for i in range(runs):
        rid, eid = f"{prefix}r{i:06d}", f"{prefix}e{i:06d}"
        conn.execute("INSERT INTO events(internal_id, name, event_id, ts, received_ms, body) VALUES (?,?,?,?,?,?)",
                     (eid, "test/e", eid, ended_ms or NOW, (ended_ms or NOW) - 1, b"{}"))
        conn.execute("INSERT INTO runs(id, fn_id, app_id, status, event_ids, queued_ms, ended_ms) "
                     "VALUES (?,?,?,?,?,?,?)", (rid, "f", "a", "Completed" if ended_ms else "Running",
                                                 f'["{eid}"]', (ended_ms or NOW) - 2, ended_ms))
        conn.execute("INSERT INTO run_events(event_internal_id, run_id) VALUES (?,?)", (eid, rid))
        conn.execute("INSERT INTO steps(run_id, step_id, pos, value) VALUES (?,?,?,?)",
                     (rid, "s", 0, b"x" * step_bytes))
        conn.execute("INSERT INTO history(run_id, at_ms, kind) VALUES (?,?,?)", (rid, ended_ms or NOW, "k"))
    conn.execute("INSERT INTO idempotency(key, run_id, expires_ms) VALUES (?,?,?)", (prefix + "k", None, NOW - 1))
    conn.execute("INSERT INTO flow(key, value, expires_ms) VALUES (?,?,?)", (prefix + "f", b"{}", NOW - 1))


async def _store(path: Path) -> SqliteStore:
    store = SqliteStore(path, TestClock(start_ms=NOW))
    await store.open()
    return store


async def test_every_statement_of_a_purge_searches_an_index(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await store.db.write(lambda c: _fill(c, 20, ended_ms=NOW - 10 * DAY, prefix="old", step_bytes=10))
        await store.db.write(lambda c: _fill(c, 5, ended_ms=None, prefix="live", step_bytes=10))
        statements: list[str] = []

        def traced(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(statements.append)

        await store.db.write(traced)
        assert await store.purge(NOW - 7 * DAY, 8) == 16  # a slice: 8 runs and 8 events
        await store.db.write(lambda c: c.set_trace_callback(None))

        def plans(conn: sqlite3.Connection) -> dict[str, list[str]]:
            out = {}
            for sql in {s for s in statements if s.split()[0].upper() in ("SELECT", "DELETE")}:
                out[sql] = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            return out

        found = await store.db.read(plans)
        assert any("run_events WHERE run_id" in sql for sql in found)
        for sql, plan in found.items():
            scans = [p for p in plan if p.startswith("SCAN ") and " USING " not in p]
            assert not scans, f"{sql}: {plan}"
        while await store.purge(NOW - 7 * DAY, 8):
            pass

        def left(conn: sqlite3.Connection) -> tuple[int, ...]:
            return tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                         for t in ("runs", "events", "run_events", "steps", "history", "idempotency", "flow"))

        assert await store.db.read(left) == (5, 5, 5, 5, 5, 0, 0)  # the live runs and their events stay
    finally:
        await store.close()


async def test_the_file_gives_back_what_the_purge_freed(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        await store.db.write(lambda c: _fill(c, 2_000, ended_ms=NOW - 10 * DAY, prefix="old", step_bytes=4_000))

        def pages(conn: sqlite3.Connection) -> int:
            return int(conn.execute("PRAGMA page_count").fetchone()[0])

        full = await store.db.read(pages)
        while await store.purge(NOW - 7 * DAY, 500):
            pass
        assert await store.db.read(pages) == full  # deleted rows only free pages inside the file
        while await store.reclaim(500):
            pass
        assert await store.db.read(pages) < full // 10
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "main.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "main.db").stat().st_size < full * 4096 // 10


async def test_an_older_database_gets_the_indexes_and_incremental_vacuum_at_start(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.close()
    with sqlite3.connect(tmp_path / "main.db", isolation_level=None) as conn:  # as version 2 left it
        as_version_3(conn)
        for index in ("run_events_run", "runs_ended", "idempotency_expires", "flow_expires", "syncs_created",
                      "operations_ended"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    store = await _store(tmp_path)
    try:
        def state(conn: sqlite3.Connection) -> tuple[int, str, int]:
            return (int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]),
                    conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0],
                    conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='run_events_run'").fetchone()[0])

        assert await store.db.read(state) == (2, str(SCHEMA_VERSION), 1)
    finally:
        await store.close()
