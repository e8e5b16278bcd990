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


async def test_the_wal_starts_over_under_writes_that_never_pause(tmp_path: Path) -> None:
    """Commits back to back keep a PASSIVE checkpoint always a few frames behind, and SQLite
    starts the WAL over only when a commit finds it fully copied: the checkpointer forces that
    once the WAL is large, so the file stops growing while the writes go on."""
    limit = 1_000_000
    db = Database(tmp_path / "main.db", wal_restart_bytes=limit)
    db.open()
    wal = tmp_path / "main.db-wal"
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (v BLOB)"))
        written, row = 0, b"x" * 20_000
        deadline = time.monotonic() + 60
        while (db.wal_restarts < 6 or written < 20 * limit) and time.monotonic() < deadline:
            await db.write(lambda c: c.executemany("INSERT INTO t VALUES (?)", [(row,)] * 5))
            written += 5 * len(row)
        assert db.wal_restarts >= 6
        # the WAL holds what came between two restarts, not everything written
        assert wal.stat().st_size < written / 2, (wal.stat().st_size, written)
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == written // len(row)
    finally:
        await db.close()


async def test_small_writes_commit_on_the_loops_thread_when_the_writer_is_idle(tmp_path: Path) -> None:
    import threading

    db = Database(tmp_path / "main.db")
    db.open()
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)"))
        inline, commits = db.inline_commits, db.commits
        threads = await asyncio.gather(*[
            db.submit(lambda c, v=v: (c.execute("INSERT INTO t VALUES (?)", (v,)), threading.get_ident())[1],
                      small=True)
            for v in range(3)])
        # one loop turn's small writes: one group, committed here, without the writer thread
        assert set(threads) == {threading.get_ident()}
        assert (db.inline_commits - inline, db.commits - commits) == (1, 1)
        assert await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY v")]) == [0, 1, 2]
    finally:
        await db.close()


async def test_small_writes_wait_their_turn_behind_the_writers_work(tmp_path: Path) -> None:
    import threading

    db = Database(tmp_path / "main.db")
    db.open()
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"))
        inline = db.inline_commits

        def slow(c: sqlite3.Connection) -> None:
            time.sleep(0.2)
            c.execute("INSERT INTO t(v) VALUES ('slow')")

        first = db.submit(slow)  # not small: to the writer thread
        small = db.submit(lambda c: (c.execute("INSERT INTO t(v) VALUES ('small')"), threading.get_ident())[1],
                          small=True)
        big = db.submit(lambda c: c.execute("INSERT INTO t(v) VALUES ('big')"))  # after the small one
        resolved: list[str] = []
        for name, fut in (("slow", first), ("small", small), ("big", big)):
            fut.add_done_callback(lambda _f, name=name: resolved.append(name))
        await asyncio.gather(first, big)
        await small
        assert resolved == ["slow", "small", "big"]  # outcomes in the order of submission
        assert await small != threading.get_ident()  # the writer was busy: the small write queued
        assert db.inline_commits == inline
        assert await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY n")]) == [
            "slow", "small", "big"]
    finally:
        await db.close()


async def test_an_inline_groups_failing_write_fails_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "main.db")
    db.open()
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)"))

        def fail(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES (2)")
            raise ValueError("bad write")

        one, bad, three = await asyncio.gather(
            db.submit(lambda c: c.execute("INSERT INTO t VALUES (1)").rowcount, small=True),
            db.submit(fail, small=True),
            db.submit(lambda c: c.execute("INSERT INTO t VALUES (3)").rowcount, small=True),
            return_exceptions=True)
        assert (one, three) == (1, 1)
        assert isinstance(bad, ValueError)
        assert await db.read(lambda c: [r[0] for r in c.execute("SELECT v FROM t ORDER BY v")]) == [1, 3]
    finally:
        await db.close()


async def test_with_an_fsync_per_commit_writes_stay_off_the_loops_thread(tmp_path: Path) -> None:
    import threading

    db = Database(tmp_path / "main.db", durability="full")
    db.open()
    try:
        await db.write(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))
        thread = await db.submit(lambda c: (c.execute("INSERT INTO t VALUES (1)"), threading.get_ident())[1],
                                 small=True)
        assert thread != threading.get_ident() and db.inline_commits == 0
    finally:
        await db.close()


def test_only_batches_of_few_ops_and_bytes_may_commit_on_the_loop() -> None:
    from pyngest.server.model import AddHistory, Batch, SaveStep, UpdateRun
    from pyngest.server.store.sqlite.store import SMALL_BATCH_BYTES, SMALL_BATCH_OPS, _small

    step = [SaveStep("r", "s", 0, b'{"data":1}'), UpdateRun("r", {"state_bytes": 10}), AddHistory("r", 0, "StepCompleted")]
    assert _small(Batch(list(step)))
    assert not _small(Batch([SaveStep("r", "s", 0, b"x" * (SMALL_BATCH_BYTES + 1))]))
    assert not _small(Batch([UpdateRun("r", {"output": b"x" * (SMALL_BATCH_BYTES + 1)})]))
    assert not _small(Batch([AddHistory("r", n, "StepCompleted") for n in range(SMALL_BATCH_OPS + 1)]))
