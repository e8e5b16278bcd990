"""SQLite connections: one writer thread with group commit, and a small pool of readers.

Why a writer thread: a commit must be durable before we acknowledge an event or send the next
request of a run, but the event loop must not stall on disk writes (WAL checkpoints fsync).
Callers hand a function to the writer and await a future. The writer takes everything queued,
runs it in one transaction (a savepoint per caller, so one failure doesn't sink the others),
commits once and resolves all the futures: under load many callers share one commit.

Small writes (a run's step, start or end; an event with its runs) skip the hand-over when the
writer has nothing to do: the ones submitted in one turn of the loop are committed right there,
on the loop's thread, with the writer's connection (``Database.submit(small=True)``). Handing a
write over and taking its answer back is two thread wake-ups and GIL hand-overs, which cost more
than the commit itself (a few WAL pages into the OS's cache) on a loaded machine.

WAL with ``synchronous=NORMAL`` survives a killed process (the WAL is in the OS page cache);
``durability="full"`` adds an fsync per commit for power-loss safety.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pyngest.server.store.base import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger("pyngest.store")


class StoreError(RuntimeError):
    """The database cannot be used as it is; the message says what to do."""

SCHEMA_VERSION = 8
_MAX_GROUP = 256
# An existing database made without incremental auto-vacuum is converted at start (one VACUUM,
# which rewrites the file and needs as much free space again) only while it is this small: a
# second or so. A larger one is left as it is, with a warning saying how to convert it offline.
VACUUM_AT_START_MAX_BYTES = 256 * 1024 * 1024
CHECKPOINT_PAUSE_S = 0.25
# The WAL is started over from its beginning once it holds this much (journal_size_limit cuts
# a larger file back to the same size). Under writes that never pause, a PASSIVE checkpoint is
# always a few commits behind, and SQLite starts the WAL over only when a commit finds it fully
# copied: without a restart forced now and then the file grew by every commit, 1.4 GB in two
# minutes of one-at-a-time runs, each append paying the file system's block allocation.
WAL_RESTART_BYTES = 64 * 1024 * 1024
# How long a forced restart waits for readers still on older WAL frames before it gives up for
# that round; writers wait behind it meanwhile (in the writer thread, not on the loop).
RESTART_READER_WAIT_MS = 100
# Before the restart, which holds writers back while it copies what is left, PASSIVE passes
# (which hold back nothing) catch up until one takes less than this: what piled up during it is
# then all the restart has to copy. At most this many passes, so writes faster than the copy
# cannot keep the restart away for ever.
RESTART_TAIL_MS = 5.0
RESTART_CATCH_UP_PASSES = 6

# Python's sqlite3 binds int, float, str and bytearray directly, but sends every other value —
# bytes and None included — through its adapter lookup first, which fails with an
# AttributeError built and dropped inside the call: about a microsecond per such parameter,
# some fifty per ten-step run (step outputs, history data, empty columns). Adapters that return
# the value as it is bind the same values (BLOB, NULL, INTEGER) and find it at the first look.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), lambda value: value)
sqlite3.register_adapter(bool, int)


def _connect(path: str, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    # 16 MiB of pages per connection (three of them): writes touch mostly recent pages, and
    # reads of older ones come from the OS's file cache cheaply. A larger cache only made the
    # server's memory creep up for as long as the database grew.
    conn.execute("PRAGMA cache_size=-16384")
    conn.execute("PRAGMA busy_timeout=30000")
    # after a checkpoint, a WAL that a large write (a purge) made big is cut back to this size
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


def _prepare_vacuum(conn: sqlite3.Connection, path: str) -> None:
    """Make the file give back the pages retention frees (``PRAGMA incremental_vacuum``).

    ``auto_vacuum=INCREMENTAL`` only takes effect on a database without tables, or through a
    full VACUUM. A new database gets it before its schema (an instant VACUUM of nothing); an existing small one is converted
    here, before the server writes anything; a large one is left alone (the VACUUM would hold
    the start for long and need as much free disk again) and a warning says how to convert it.
    """
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    if not conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
        # WAL mode has written the header already: the VACUUM of an empty file applies it
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        return
    size = Path(path).stat().st_size if path != ":memory:" else 0
    if size > VACUUM_AT_START_MAX_BYTES:
        log.warning(
            "%s (%d MB) was made without incremental vacuum: retention frees pages inside the file "
            "but cannot shrink it. To convert it, stop the server and run "
            "sqlite3 %s 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;' (needs as much free disk space "
            "as the file's size)", path, size // 1_048_576, path)
        return
    try:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        log.info("%s converted to incremental vacuum (%d MB rewritten)", path, size // 1_048_576)
    except sqlite3.Error as exc:  # e.g. not enough free space: the database is as it was
        log.warning("%s: could not convert to incremental vacuum, the file keeps its size: %s", path, exc)


def _migrate(conn: sqlite3.Connection) -> None:
    """Create the schema, or upgrade an older one in place."""
    schema = resources.files("pyngest.server.store.sqlite").joinpath("schema.sql").read_text()
    have_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    current = 0
    if have_meta:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {current}, newer than this pyngest "
            f"understands ({SCHEMA_VERSION}); upgrade pyngest or use another --sqlite-dir"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        if current == 0:
            for stmt in _statements(schema):
                conn.execute(stmt)
        else:
            migrations = resources.files("pyngest.server.store.sqlite").joinpath("migrations")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                path = migrations.joinpath(f"{version:03d}.sql")
                for stmt in _statements(path.read_text()):
                    conn.execute(stmt)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a script into statements (comments may contain semicolons)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    if current.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()):
        raise ValueError(f"incomplete SQL statement at the end of the script: {current.strip()[:80]}")
    return out


class Database:
    def __init__(self, path: Path | str, *, durability: str = "normal", readers: int = 2,
                 wal_restart_bytes: int = WAL_RESTART_BYTES) -> None:
        self.path = str(path)
        self.wal_restart_bytes = wal_restart_bytes
        self.durability = durability
        self._readers = readers
        self._writes: queue.SimpleQueue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # how many transactions the writer committed (for figures and tests)
        self._checkpointer: threading.Thread | None = None
        self._committed = threading.Event()  # set by the writer: there is something to checkpoint
        self._closing = False
        self.checkpoints = 0  # how many checkpoints the checkpointer ran (for tests)
        self.wal_restarts = 0  # how many times it started the WAL over (for figures and tests)
        # Small writes are committed on the event loop's thread when the writer has nothing to do
        # (see submit): the writer thread's connection, taken under this lock.
        self._conn: sqlite3.Connection | None = None
        self._mutex = threading.Lock()
        # writes handed to the writer thread, and of them those whose outcome the loop has
        # delivered (both counted on the loop's thread): equal, the writer has nothing left
        self._queued = 0
        self._settled = 0
        self._gathered: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self.inline_commits = 0  # groups committed on the loop's thread (for figures and tests)

    def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, self.durability)
        _prepare_vacuum(conn, self.path)
        _migrate(conn)
        self._loop = asyncio.get_running_loop()
        self._closing = False
        if self.path != ":memory:":
            # Checkpoints (copying the WAL into the database file, with an fsync) run in a thread
            # of their own, not in the writer's commits: a large write such as a retention purge
            # fills the WAL fast, and a checkpoint in the writer held every write behind it for up
            # to 100 ms. A PASSIVE checkpoint needs no lock that writers take.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="pyngest-sqlite-checkpointer", daemon=True)
            self._checkpointer.start()
        self._conn = conn
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="pyngest-sqlite-writer", daemon=True
        )
        self._writer.start()
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="pyngest-sqlite-reader")

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._closing = True
            self._committed.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        if self._gathered:
            self._commit_gathered()
        self._conn = None
        if self._writer is not None:
            self._writes.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path, self.durability)
        conn.execute(f"PRAGMA busy_timeout={RESTART_READER_WAIT_MS}")
        frame_bytes = conn.execute("PRAGMA page_size").fetchone()[0] + 24  # a WAL frame's header
        try:
            while not self._closing:
                self._committed.wait()
                self._committed.clear()
                if self._closing:
                    break
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    if frames * frame_bytes >= self.wal_restart_bytes:
                        self._catch_up(conn)
                        self._restart_wal(conn)
                except sqlite3.Error as exc:  # a full disk, say: the next round tries again
                    log.debug("checkpoint failed: %s", exc)
                # commits in the meantime are checkpointed together, a few times a second at most
                time.sleep(CHECKPOINT_PAUSE_S)
        finally:
            conn.close()  # before the writer's: its close, the last, checkpoints and removes the WAL

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """PASSIVE passes until one is short: each copies what the commits wrote during the one
        before, so the restart's copy (with the writers held back) is small."""
        for _ in range(RESTART_CATCH_UP_PASSES):
            started = time.perf_counter()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
            if (time.perf_counter() - started) * 1000 < RESTART_TAIL_MS:
                return

    def _restart_wal(self, conn: sqlite3.Connection) -> None:
        """Copy the last frames with no commit in between, so that the next commit starts the
        WAL over from its beginning (writing over blocks the file has, not growing it).

        Our writers' lock is taken first: a commit meanwhile is handed to the writer thread and
        waits there, for the frames written since the last PASSIVE pass and two syncs. Without
        it, the loop's own commits would meet SQLite's write lock held by the RESTART and sleep
        in SQLite's busy handler on the loop's thread."""
        with self._mutex:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        if not busy and frames == copied:
            self.wal_restarts += 1

    def submit(self, fn: Callable[[sqlite3.Connection], T], *, small: bool = False) -> asyncio.Future[T]:
        """Queue ``fn`` for the writer now; the future resolves once it is committed.

        Writes are applied in the order they are submitted. A ``small`` write (a few rows, such
        as a run's step) may be committed on the loop's own thread (:meth:`_commit_gathered`).
        """
        assert self._loop is not None, "database is not open"
        fut: asyncio.Future[T] = self._loop.create_future()
        if small and self._conn is not None and self.durability != "full":
            if not self._gathered:
                self._loop.call_soon(self._commit_gathered)
            self._gathered.append((fn, fut))
        else:
            if self._gathered:  # submitted before this one: applied before it
                group, self._gathered = self._gathered, []
                self._hand_over(group)
            self._hand_over([(fn, fut)])
        return fut

    def _hand_over(self, items: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]) -> None:
        self._queued += len(items)
        for item in items:
            self._writes.put(item)

    def _commit_gathered(self) -> None:
        """The small writes submitted since the loop's last turn, as one group: committed right
        here if the writer thread is idle with nothing queued (no hand-over to it and back, two
        thread wake-ups per commit), else queued for it behind what it has, in order.

        Only small writes, and only without an fsync per commit (``durability="normal"``): such a
        commit writes a few pages to the WAL in the OS's cache, a fraction of a millisecond
        that the loop would otherwise spend handing the write over and taking the answer back."""
        group, self._gathered = self._gathered, []
        conn = self._conn
        if not group:
            return
        # Not while a write handed over is unapplied or its outcome undelivered: commits and
        # their outcomes keep the order of submission.
        if conn is None or self._queued != self._settled or not self._mutex.acquire(blocking=False):
            self._hand_over(group)
            return
        try:
            outcomes = self._apply_group(conn, group)
        finally:
            self._mutex.release()
        self.inline_commits += 1
        _settle(outcomes)

    def _settle_handed(self, outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
        self._settled += len(outcomes)
        _settle(outcomes)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's transaction; return once it is committed."""
        return await self.submit(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._loop is not None and self._pool is not None, "database is not open"
        return await self._loop.run_in_executor(self._pool, self._read_in_thread, fn)

    def _read_in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self.durability)
            self._local.conn = conn
        return fn(conn)

    def _apply_group(
        self, conn: sqlite3.Connection, group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Apply the writes of ``group`` in one transaction and commit once.

        Writes do not fail in normal operation, so the group runs without a savepoint per
        write (each costs the writer two more statements, and every statement a hand-over of
        the GIL). If one does fail, the whole transaction is rolled back and each write is
        applied again on its own, so that only the failing one fails: every write function
        touches nothing but the connection, so running it twice is safe.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [fn(conn) for fn, _ in group]
            conn.execute("COMMIT")
        except Exception as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled back already (it does after a full disk or an I/O error)
            if _out_of_space(exc):
                # every write of the group needs room: none of them is tried again here, each
                # caller hears that nothing was stored (503 for the Event API) and may retry
                # once space is back; the connection itself stays usable
                unavailable = StoreUnavailable(
                    f"the disk holding {self.path} is full (SQLite: {exc}); nothing was written")
                return [(fut, False, unavailable) for _, fut in group]
            if len(group) == 1:
                return [(group[0][1], False, exc)]
            return [outcome for item in group for outcome in self._apply_group(conn, [item])]
        self.commits += 1
        self._committed.set()
        return [(fut, True, result) for (_, fut), result in zip(group, results, strict=True)]

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        loop = self._loop
        assert loop is not None
        stop = False
        while not stop:
            first = self._writes.get()
            if first is None:
                break
            group = [first]
            while len(group) < _MAX_GROUP:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            with self._mutex:
                outcomes = self._apply_group(conn, group)
            loop.call_soon_threadsafe(self._settle_handed, outcomes)
        conn.close()


def _out_of_space(exc: BaseException) -> bool:
    """SQLITE_FULL, or a write refused by the OS for want of space or quota."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) is not None:
        code = exc.sqlite_errorcode & 0xFF
        return code == sqlite3.SQLITE_FULL
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in outcomes:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
