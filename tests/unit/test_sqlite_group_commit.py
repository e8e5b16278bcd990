"""The SQLite writer's group commit: many writes, one transaction, each caller its own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from pyngest.server.store.sqlite.connection import Database


async def test_a_failing_write_fails_alone_and_its_group_is_still_committed(tmp_path: Path) -> None:
    db = Database(tmp_path / "main.db")
    db.open()
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)"))
        commits = db.commits

        def slow(c: sqlite3.Connection) -> None:
            time.sleep(0.2)  # holds the writer, so the next writes queue up into one group
            c.execute("INSERT INTO t VALUES (0)")

        def fail(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES (2)")  # undone with the rest of this write
            raise ValueError("bad write")

        first = db.submit(slow)
        await asyncio.sleep(0.05)
        grouped = [
            db.submit(lambda c: c.execute("INSERT INTO t VALUES (1)").rowcount),
            db.submit(fail),
            db.submit(lambda c: c.execute("INSERT INTO t VALUES (3)").rowcount),
        ]
        await first
        one, bad, three = await asyncio.gather(*grouped, return_exceptions=True)
        assert (one, three) == (1, 1)
        assert isinstance(bad, ValueError) and str(bad) == "bad write"
        rows = await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY v")])
        assert rows == [0, 1, 3]
        # the slow write; then, the group rolled back, its two good writes each committed alone
        assert db.commits - commits == 1 + 2

        with pytest.raises(sqlite3.IntegrityError):  # a lone failing write fails as itself
            await db.write(lambda c: c.execute("INSERT INTO t VALUES (1)"))
    finally:
        await db.close()


async def test_checkpoints_run_beside_the_writer_not_in_its_commits(tmp_path: Path) -> None:
    db = Database(tmp_path / "main.db")
    db.open()
    try:
        assert await db.write(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
        await db.write(lambda c: c.execute("CREATE TABLE t (v BLOB)"))
        for _ in range(10):
            await db.write(lambda c: c.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,)] * 100))
        deadline = time.monotonic() + 10
        while (db.checkpoints == 0 or (tmp_path / "main.db").stat().st_size < 4_000_000) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert db.checkpoints > 0
        assert (tmp_path / "main.db").stat().st_size >= 4_000_000  # the WAL was copied into the file
    finally:
        await db.close()
    assert not (tmp_path / "main.db-wal").exists()  # the writer's close, the last one, removed it
