"""The SQLite backend: the embedded default, one process."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from pyngest.clock import Clock
from pyngest.server.model import (
    AddHistory,
    AddPause,
    AddSkip,
    Batch,
    ClaimPause,
    CommitResult,
    CreateRun,
    DeleteFlow,
    DeleteJob,
    DeletePause,
    DeleteRunJobs,
    DeleteRunPauses,
    Enqueue,
    InsertEvents,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    SaveStep,
    SetFlow,
    StoredEvent,
    UpdateRun,
    compact,
    op_run_id,
)
from pyngest.server.store.base import (
    AppRecord,
    AppUrlRecord,
    FunctionRecord,
    HistoryRow,
    OperationRecord,
    RunQuery,
    SyncRecord,
)
from pyngest.server.store.sqlite.connection import Database
from pyngest.server.store.sqlite.envs import EnvTables
from pyngest.server.store.sqlite.reads import DashboardReads, event_where, run_where
from pyngest.server.store.sqlite.webhooks import SqliteWebhooks

_RUN_COLUMNS = (
    "id, fn_id, app_id, fn_version, status, event_ids, batch_id, cron, original_run_id, "
    "queued_ms, started_ms, ended_ms, output, version, force_step_plan, pending, state_bytes, attrs, env_id"
)
_JOB_COLUMNS = "id, run_id, kind, due_ms, priority, step_id, attempt, payload"
_PAUSE_COLUMNS = (
    "id, run_id, step_id, kind, event_name, expression, signal, after_seq, expires_ms, data"
)
_EVENT_COLUMNS = "seq, internal_id, name, event_id, ts, received_ms, source, body, env_id"

# UpdateRun fields and how they are stored.
_JSON_FIELDS = {"event_ids", "pending", "attrs"}
_BOOL_FIELDS = {"force_step_plan"}
_RUN_FIELDS = {
    "status", "event_ids", "batch_id", "cron", "original_run_id", "queued_ms", "started_ms",
    "ended_ms", "output", "version", "force_step_plan", "pending", "state_bytes", "attrs",
    "fn_version",
}


def _run_from_row(row: tuple[Any, ...]) -> Run:
    return Run(
        id=row[0],
        fn_id=row[1],
        app_id=row[2],
        fn_version=row[3],
        status=RunStatus(row[4]),
        event_ids=orjson.loads(row[5]),
        events=[],
        batch_id=row[6],
        cron=row[7],
        original_run_id=row[8],
        queued_ms=row[9],
        started_ms=row[10],
        ended_ms=row[11],
        output=row[12],
        version=row[13],
        force_step_plan=bool(row[14]),
        pending=orjson.loads(row[15]) if row[15] is not None else None,
        state_bytes=row[16],
        attrs=orjson.loads(row[17]) if row[17] else {},
        env_id=row[18],
    )


_HISTORY_ROWS = 4_000  # rows per INSERT: 7 values each, within SQLite's 32,766 variables


def _insert_history(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """History rows in order, as few statements as SQLite's limit on variables allows (each
    statement is a hand-over of the GIL in the writer)."""
    for start in range(0, len(rows), _HISTORY_ROWS):
        chunk = rows[start:start + _HISTORY_ROWS]
        conn.execute(
            "INSERT INTO history(run_id, at_ms, kind, step_id, name, attempt, data) VALUES "
            + ",".join(["(?,?,?,?,?,?,?)"] * len(chunk)),
            [value for row in chunk for value in row],
        )


def _job_from_row(row: tuple[Any, ...]) -> Job:
    return Job(
        id=row[0],
        run_id=row[1],
        kind=JobKind(row[2]),
        due_ms=row[3],
        priority=row[4],
        step_id=row[5],
        attempt=row[6],
        payload=orjson.loads(row[7]) if row[7] else None,
    )


def _pause_from_row(row: tuple[Any, ...]) -> Pause:
    return Pause(
        id=row[0],
        run_id=row[1],
        step_id=row[2],
        kind=PauseKind(row[3]),
        event_name=row[4],
        expression=row[5],
        signal=row[6],
        after_seq=row[7],
        expires_ms=row[8],
        data=orjson.loads(row[9]) if row[9] else None,
    )


def _event_from_row(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        seq=row[0], internal_id=row[1], name=row[2], event_id=row[3], ts=row[4],
        received_ms=row[5], source=row[6], body=row[7], env_id=row[8],
    )


# A batch this small (a step, a run's start or end, an event with its runs) commits in well
# under a millisecond: it may be committed on the loop's thread (Database.submit). Counted:
# its ops, and the bytes of what it stores that can be large (events, step outputs, a run's
# output, history data).
SMALL_BATCH_OPS = 32
SMALL_BATCH_BYTES = 64 * 1024


def _small(batch: Batch) -> bool:
    if len(batch.ops) > SMALL_BATCH_OPS:
        return False
    size = 0
    for op in batch.ops:
        if type(op) is SaveStep:
            size += len(op.value)
        elif type(op) is InsertEvents:
            size += sum(len(ev.body) for ev in op.events)
        elif type(op) is AddHistory:
            size += len(op.data or b"")
        elif type(op) is UpdateRun:
            output = op.fields.get("output")
            size += len(output) if isinstance(output, (bytes, str)) else 0
    return size <= SMALL_BATCH_BYTES


class SqliteStore(DashboardReads, EnvTables, SqliteWebhooks):
    def __init__(self, directory: Path | str, clock: Clock, *, durability: str = "normal") -> None:
        directory = Path(directory)
        self.db = Database(directory / "main.db", durability=durability)
        self.clock = clock

    async def open(self) -> None:
        self.db.open()

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------------------- writes

    def submit(self, batch: Batch) -> asyncio.Future[CommitResult]:
        return self.db.submit(lambda conn: self._apply(conn, batch), small=_small(batch))

    async def commit(self, batch: Batch) -> CommitResult:
        return await self.submit(batch)

    def _apply(self, conn: sqlite3.Connection, batch: Batch) -> CommitResult:
        result = CommitResult()
        skipped: set[str] = set()
        now = self.clock.now_ms()
        history: list[tuple[Any, ...]] = []  # the batch's history rows, inserted in one statement
        for op in compact(batch.ops):  # a run's several updates in one batch: one UPDATE
            rid = op_run_id(op)
            if rid is not None and rid in skipped:
                continue
            if type(op) is SaveStep:
                conn.execute(
                    "INSERT OR IGNORE INTO steps(run_id, step_id, pos, value) VALUES (?,?,?,?)",
                    (op.run_id, op.step_id, op.pos, op.value),
                )
            elif type(op) is Enqueue:
                j = op.job
                cur = conn.execute(
                    f"INSERT OR IGNORE INTO jobs({_JOB_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    (j.id, j.run_id, j.kind._value_, j.due_ms, j.priority, j.step_id, j.attempt,
                     orjson.dumps(j.payload) if j.payload is not None else None),
                )
                if cur.rowcount == 0:
                    result.ignored_jobs.add(j.id)
            elif type(op) is DeleteJob:
                conn.execute("DELETE FROM jobs WHERE id=?", (op.job_id,))
            elif type(op) is UpdateRun:
                self._update_run(conn, op)
            elif type(op) is AddHistory:
                history.append((op.run_id, op.at_ms, op.kind, op.step_id, op.name, op.attempt, op.data))
            elif type(op) is InsertEvents:
                for ev in op.events:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO events(internal_id, name, event_id, ts, "
                        "received_ms, source, body, env_id) VALUES (?,?,?,?,?,?,?,?)",
                        (ev.internal_id, ev.name, ev.event_id, ev.ts, ev.received_ms, ev.source,
                         ev.body, ev.env_id),
                    )
                    if cur.rowcount == 0:
                        result.duplicate_events.add(ev.internal_id)
                        row = conn.execute(
                            "SELECT seq FROM events WHERE internal_id=?", (ev.internal_id,)
                        ).fetchone()
                        ev.seq = row[0]
                    else:
                        ev.seq = cur.lastrowid or 0
                    result.event_seqs[ev.internal_id] = ev.seq
            elif type(op) is CreateRun:
                holder = self._claim_keys(conn, op, now)
                if holder is not None:
                    skipped.add(op.run.id)
                    result.skipped_runs[op.run.id] = holder
                    continue
                self._insert_run(conn, op.run)
                result.created_runs.append(op.run.id)
            elif type(op) is AddPause:
                p = op.pause
                conn.execute(
                    f"INSERT OR REPLACE INTO pauses({_PAUSE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (p.id, p.run_id, p.step_id, p.kind.value, p.event_name, p.expression,
                     p.signal, p.after_seq, p.expires_ms,
                     orjson.dumps(p.data) if p.data is not None else None),
                )
            elif type(op) is DeletePause:
                cur = conn.execute("DELETE FROM pauses WHERE id=?", (op.pause_id,))
                if cur.rowcount:
                    result.deleted_pauses.add(op.pause_id)
            elif type(op) is ClaimPause:
                cur = conn.execute("DELETE FROM pauses WHERE id=?", (op.pause_id,))
                if not cur.rowcount:
                    result.void = True
                    break
                result.deleted_pauses.add(op.pause_id)
            elif type(op) is DeleteRunPauses:
                result.deleted_pauses.update(
                    r[0] for r in conn.execute("DELETE FROM pauses WHERE run_id=? RETURNING id", (op.run_id,)))
            elif type(op) is DeleteRunJobs:
                result.deleted_jobs.update(r[0] for r in conn.execute(
                    "DELETE FROM jobs WHERE run_id=? AND id IS NOT ? RETURNING id", (op.run_id, op.keep)))
            elif type(op) is SetFlow:
                conn.execute(
                    "INSERT OR REPLACE INTO flow(key, value, expires_ms) VALUES (?,?,?)",
                    (op.key, orjson.dumps(op.value), op.expires_ms),
                )
            elif type(op) is DeleteFlow:
                if op.only_if is None:
                    conn.execute("DELETE FROM flow WHERE key=?", (op.key,))
                else:
                    conn.execute("DELETE FROM flow WHERE key=? AND value=?", (op.key, orjson.dumps(op.only_if)))
            elif type(op) is AddSkip:
                conn.execute(
                    "INSERT OR IGNORE INTO skips(event_internal_id, fn_id, reason, at_ms) VALUES (?,?,?,?)",
                    (op.event_internal_id, op.fn_id, op.reason, op.at_ms),
                )
            else:  # pragma: no cover - a new op type without a handler is a programming error
                raise TypeError(f"unknown batch operation {type(op).__name__}")
        _insert_history(conn, history)
        return result

    @staticmethod
    def _claim_keys(conn: sqlite3.Connection, op: CreateRun, now: int) -> str | None:
        """Take the run's idempotency keys, one statement each; if an unexpired entry holds one,
        take none and return the run holding it."""
        keys = ([op.idempotency_key] if op.idempotency_key is not None else []) + op.extra_keys
        for n, key in enumerate(keys):
            cur = conn.execute(
                "INSERT INTO idempotency(key, run_id, expires_ms) VALUES (?,?,?) ON CONFLICT(key) DO UPDATE "
                "SET run_id=excluded.run_id, expires_ms=excluded.expires_ms WHERE idempotency.expires_ms <= ?",
                (key, op.run.id, op.idempotency_expires_ms, now),
            )
            if cur.rowcount == 0:
                holder = conn.execute("SELECT run_id FROM idempotency WHERE key=?", (key,)).fetchone()[0]
                conn.executemany("DELETE FROM idempotency WHERE key=? AND run_id=?", [(k, op.run.id) for k in keys[:n]])
                return str(holder)
        return None

    def _insert_run(self, conn: sqlite3.Connection, run: Run) -> None:
        conn.execute(
            f"INSERT INTO runs({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run.id, run.fn_id, run.app_id, run.fn_version, run.status._value_,
             orjson.dumps(run.event_ids), run.batch_id, run.cron, run.original_run_id,
             run.queued_ms, run.started_ms, run.ended_ms, run.output, run.version,
             int(run.force_step_plan),
             orjson.dumps(run.pending) if run.pending is not None else None,
             run.state_bytes, orjson.dumps(run.attrs) if run.attrs else None, run.env_id),
        )
        if len(run.event_ids) == 1:  # the usual case, as one statement rather than a loop of them
            conn.execute("INSERT OR IGNORE INTO run_events(event_internal_id, run_id) VALUES (?,?)",
                         (run.event_ids[0], run.id))
        else:
            conn.executemany(
                "INSERT OR IGNORE INTO run_events(event_internal_id, run_id) VALUES (?,?)",
                [(eid, run.id) for eid in run.event_ids],
            )

    def _update_run(self, conn: sqlite3.Connection, op: UpdateRun) -> None:
        sets = []
        values: list[Any] = []
        for key, value in op.fields.items():
            if key not in _RUN_FIELDS:
                raise KeyError(f"unknown run field {key!r}")
            if key in _JSON_FIELDS:
                value = orjson.dumps(value) if value is not None else None
            elif key in _BOOL_FIELDS:
                value = int(bool(value))
            elif key == "status":
                # (a member's ``.value`` and ``RunStatus(member)`` are slow Python calls in 3.11)
                value = (value if type(value) is RunStatus else RunStatus(value))._value_
            sets.append(f"{key}=?")
            values.append(value)
        if sets:
            values.append(op.run_id)
            conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", values)

    # -------------------------------------------------------------------------- run reads

    async def load_run(self, run_id: str) -> Run | None:
        return await self.db.read(lambda conn: self._load_run(conn, run_id))

    @staticmethod
    def _load_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
        row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            return None
        run = _run_from_row(row)
        for step_id, value in conn.execute(
            "SELECT step_id, value FROM steps WHERE run_id=? ORDER BY pos", (run_id,)
        ):
            run.steps[step_id] = value
            run.stack.append(step_id)
        bodies = dict(
            conn.execute(
                f"SELECT internal_id, body FROM events WHERE internal_id IN "
                f"({','.join('?' * len(run.event_ids))})",
                run.event_ids,
            ).fetchall()
        ) if run.event_ids else {}
        run.events = [bodies[e] for e in run.event_ids if e in bodies]
        return run.counted()

    async def list_runs(self, query: RunQuery) -> list[Run]:
        def q(conn: sqlite3.Connection) -> list[Run]:
            where, args = run_where(query)
            sql = f"SELECT {_RUN_COLUMNS} FROM runs"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(query.limit)
            return [_run_from_row(r) for r in conn.execute(sql, args)]

        return await self.db.read(q)

    async def runs_for_event(self, internal_id: str) -> list[Run]:
        def q(conn: sqlite3.Connection) -> list[Run]:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN "
                "(SELECT run_id FROM run_events WHERE event_internal_id=?) ORDER BY id",
                (internal_id,),
            )
            return [_run_from_row(r) for r in rows]

        return await self.db.read(q)

    async def history(self, run_id: str) -> list[HistoryRow]:
        def q(conn: sqlite3.Connection) -> list[HistoryRow]:
            rows = conn.execute(
                "SELECT seq, run_id, at_ms, kind, step_id, name, attempt, data FROM history "
                "WHERE run_id=? ORDER BY seq",
                (run_id,),
            )
            return [HistoryRow(*r) for r in rows]

        return await self.db.read(q)

    async def jobs_due_before(self, until_ms: int, limit: int, shards: list[int] | None = None) -> list[Job]:
        def q(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE due_ms < ? ORDER BY due_ms LIMIT ?",
                (until_ms, limit),
            )
            return [_job_from_row(r) for r in rows]

        return await self.db.read(q)

    async def jobs_due_between(self, from_ms: int, until_ms: int, shards: list[int] | None = None) -> list[Job]:
        def q(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE due_ms >= ? AND due_ms < ?",
                (from_ms, until_ms),
            )
            return [_job_from_row(r) for r in rows]

        return await self.db.read(q)

    async def jobs_for_run(self, run_id: str) -> list[Job]:
        def q(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id=?", (run_id,))
            return [_job_from_row(r) for r in rows]

        return await self.db.read(q)

    async def all_pauses(self, shards: list[int] | None = None) -> list[Pause]:
        def q(conn: sqlite3.Connection) -> list[Pause]:
            return [_pause_from_row(r) for r in conn.execute(f"SELECT {_PAUSE_COLUMNS} FROM pauses")]

        return await self.db.read(q)

    async def pause_for_signal(self, signal: str) -> Pause | None:
        def q(conn: sqlite3.Connection) -> Pause | None:
            row = conn.execute(f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE signal=?", (signal,)).fetchone()
            return _pause_from_row(row) if row is not None else None

        return await self.db.read(q)

    async def all_flow(self, shards: list[int] | None = None) -> list[tuple[str, Any, int]]:
        def q(conn: sqlite3.Connection) -> list[tuple[str, Any, int]]:
            now = self.clock.now_ms()
            rows = conn.execute("SELECT key, value, expires_ms FROM flow WHERE expires_ms > ?", (now,))
            return [(k, orjson.loads(v), e) for k, v, e in rows]

        return await self.db.read(q)

    async def skips_for_event(self, internal_id: str) -> list[tuple[str, str, int]]:
        def q(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
            rows = conn.execute(
                "SELECT fn_id, reason, at_ms FROM skips WHERE event_internal_id=?", (internal_id,)
            )
            return [tuple(r) for r in rows]

        return await self.db.read(q)

    async def idempotency_taken(self, keys: list[str], now_ms: int) -> bool:
        def q(conn: sqlite3.Connection) -> bool:
            marks = ",".join("?" * len(keys))
            row = conn.execute(
                f"SELECT 1 FROM idempotency WHERE key IN ({marks}) AND expires_ms > ? LIMIT 1", (*keys, now_ms)
            ).fetchone()
            return row is not None

        return await self.db.read(q) if keys else False

    # ----------------------------------------------------------------------------- events

    async def get_event(self, internal_id: str) -> StoredEvent | None:
        events = await self.get_events([internal_id])
        return events[0] if events else None

    async def get_events(self, internal_ids: list[str]) -> list[StoredEvent]:
        if not internal_ids:
            return []

        def q(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE internal_id IN "
                f"({','.join('?' * len(internal_ids))})",
                internal_ids,
            )
            by_id = {r[1]: _event_from_row(r) for r in rows}
            return [by_id[i] for i in internal_ids if i in by_id]

        return await self.db.read(q)

    async def list_events(
        self, name: str | None, limit: int, before_seq: int | None = None,
        from_ms: int | None = None, until_ms: int | None = None, *, internal: bool = True,
        env_id: str | None = None,
    ) -> list[StoredEvent]:
        def q(conn: sqlite3.Connection) -> list[StoredEvent]:
            where, args = event_where([name] if name else None, from_ms, until_ms, internal=internal,
                                      env_id=env_id)
            if before_seq is not None:
                where.append("seq < ?")
                args.append(before_seq)
            sql = f"SELECT {_EVENT_COLUMNS} FROM events"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY seq DESC LIMIT ?"
            args.append(limit)
            return [_event_from_row(r) for r in conn.execute(sql, args)]

        return await self.db.read(q)

    async def max_event_seq(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
            return int(row[0] or 0)

        return await self.db.read(q)

    # -------------------------------------------------------------------------- retention

    async def purge(self, before_ms: int, limit: int) -> int:
        now = self.clock.now_ms()

        def w(conn: sqlite3.Connection) -> int:
            # every statement below is a search through an index (see test_retention_purge):
            # a slice costs the writer a few milliseconds whatever the size of the tables
            runs = [(r[0],) for r in conn.execute(
                "SELECT id FROM runs WHERE ended_ms IS NOT NULL AND ended_ms < ? LIMIT ?", (before_ms, limit))]
            for table in ("steps", "history", "run_events"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id=?", runs)
            conn.executemany("DELETE FROM runs WHERE id=?", runs)
            events = [(r[0],) for r in conn.execute(
                "SELECT internal_id FROM events e WHERE received_ms < ? AND NOT EXISTS "
                "(SELECT 1 FROM run_events re JOIN runs r ON r.id = re.run_id "
                " WHERE re.event_internal_id = e.internal_id AND r.ended_ms IS NULL) LIMIT ?",
                (before_ms, limit))]
            conn.executemany("DELETE FROM run_events WHERE event_internal_id=?", events)
            conn.executemany("DELETE FROM skips WHERE event_internal_id=?", events)
            conn.executemany("DELETE FROM events WHERE internal_id=?", events)
            for sql, arg in (
                ("DELETE FROM idempotency WHERE key IN "
                 "(SELECT key FROM idempotency WHERE expires_ms < ? LIMIT ?)", now),
                ("DELETE FROM flow WHERE key IN (SELECT key FROM flow WHERE expires_ms < ? LIMIT ?)", now),
                ("DELETE FROM syncs WHERE id IN (SELECT id FROM syncs WHERE created_ms < ? LIMIT ?)", before_ms),
                ("DELETE FROM operations WHERE id IN (SELECT id FROM operations "
                 "WHERE ended_ms IS NOT NULL AND ended_ms < ? LIMIT ?)", before_ms),
                ("DELETE FROM webhook_failures WHERE id IN (SELECT id FROM webhook_failures "
                 "WHERE received_ms < ? LIMIT ?)", before_ms),
            ):
                conn.execute(sql, (arg, limit))
            return len(runs) + len(events)

        return await self.db.write(w)

    async def reclaim(self, pages: int) -> int:
        def w(conn: sqlite3.Connection) -> int:
            if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                return 0  # an old file not converted (see connection._prepare_vacuum): it keeps its size
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            # the pragma gives back one page per step, and Python's sqlite3 steps a statement
            # without result columns once (executescript would commit the writer's transaction)
            for _ in range(min(free, pages)):
                conn.execute("PRAGMA incremental_vacuum(1)")
            return int(conn.execute("PRAGMA freelist_count").fetchone()[0])

        return await self.db.write(w)

    # ------------------------------------------------------------------- bulk operations

    async def save_operation(self, op: OperationRecord) -> None:
        await self.db.write(lambda conn: conn.execute(
            "INSERT OR REPLACE INTO operations(id, kind, fn_id, app_id, name, spec, status, total, done, "
            "created_ms, ended_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (op.id, op.kind, op.fn_id, op.app_id, op.name, orjson.dumps(op.spec), op.status, op.total,
             op.done, op.created_ms, op.ended_ms),
        ))

    async def get_operation(self, op_id: str) -> OperationRecord | None:
        ops = await self._operations("WHERE id=?", (op_id,), 1)
        return ops[0] if ops else None

    async def list_operations(self, fn_id: str | None, kind: str | None, limit: int) -> list[OperationRecord]:
        where: list[str] = []
        args: list[Any] = []
        if fn_id:
            where.append("fn_id=?")
            args.append(fn_id)
        if kind:
            where.append("kind=?")
            args.append(kind)
        return await self._operations(("WHERE " + " AND ".join(where)) if where else "", tuple(args), limit)

    async def _operations(self, where: str, args: tuple[Any, ...], limit: int) -> list[OperationRecord]:
        def q(conn: sqlite3.Connection) -> list[OperationRecord]:
            rows = conn.execute(
                "SELECT id, kind, fn_id, app_id, name, spec, status, total, done, created_ms, ended_ms "
                f"FROM operations {where} ORDER BY created_ms DESC LIMIT ?", (*args, limit),
            )
            return [OperationRecord(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5]), *r[6:]) for r in rows]

        return await self.db.read(q)

    async def skipped_events(self, fn_id: str, from_ms: int, until_ms: int, after_event: str | None,
                             limit: int) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT event_internal_id FROM skips WHERE fn_id=? AND reason='function_paused' "
                "AND at_ms >= ? AND at_ms < ? AND event_internal_id > ? ORDER BY event_internal_id LIMIT ?",
                (fn_id, from_ms, until_ms, after_event or "", limit),
            )
            return [r[0] for r in rows]

        return await self.db.read(q)

    # --------------------------------------------------------------------------- registry

    async def list_apps(self) -> list[AppRecord]:
        def q(conn: sqlite3.Connection) -> list[AppRecord]:
            rows = conn.execute(
                "SELECT id, name, url, sdk_language, sdk_version, framework, app_version, "
                "checksum, error, created_ms, updated_ms, env_id FROM apps ORDER BY name"
            )
            return [AppRecord(*r) for r in rows]

        return await self.db.read(q)

    async def save_app(self, app: AppRecord) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO apps(id, name, url, sdk_language, sdk_version, framework, "
                "app_version, checksum, error, created_ms, updated_ms, env_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET name=excluded.name, url=excluded.url, "
                "sdk_language=excluded.sdk_language, sdk_version=excluded.sdk_version, "
                "framework=excluded.framework, app_version=excluded.app_version, "
                "checksum=excluded.checksum, error=excluded.error, updated_ms=excluded.updated_ms",
                (app.id, app.name, app.url, app.sdk_language, app.sdk_version, app.framework,
                 app.app_version, app.checksum, app.error, app.created_ms, app.updated_ms, app.env_id),
            )

        await self.db.write(w)

    async def delete_app(self, app_id: str, now_ms: int) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM apps WHERE id=?", (app_id,))
            conn.execute(
                "UPDATE functions SET archived_ms=? WHERE app_id=? AND archived_ms IS NULL",
                (now_ms, app_id),
            )

        await self.db.write(w)

    async def list_functions(self, include_archived: bool = False) -> list[FunctionRecord]:
        def q(conn: sqlite3.Connection) -> list[FunctionRecord]:
            sql = (
                "SELECT id, app_id, slug, name, config, version, created_ms, updated_ms, "
                "archived_ms, paused_ms, env_id FROM functions"
            )
            if not include_archived:
                sql += " WHERE archived_ms IS NULL"
            sql += " ORDER BY slug"
            out = []
            for r in conn.execute(sql):
                out.append(FunctionRecord(r[0], r[1], r[2], r[3], orjson.loads(r[4]), *r[5:]))
            return out

        return await self.db.read(q)

    async def save_functions(
        self, app_id: str, functions: list[FunctionRecord], now_ms: int
    ) -> list[str]:
        """Upsert an app's functions; archive the ones it no longer has. Returns archived ids."""

        def w(conn: sqlite3.Connection) -> list[str]:
            keep = set()
            for fn in functions:
                keep.add(fn.id)
                conn.execute(
                    "INSERT INTO functions(id, app_id, slug, name, config, version, created_ms, "
                    "updated_ms, archived_ms, env_id) VALUES (?,?,?,?,?,?,?,?,NULL,?) "
                    "ON CONFLICT(id) DO UPDATE SET app_id=excluded.app_id, slug=excluded.slug, "
                    "name=excluded.name, config=excluded.config, version=excluded.version, "
                    "updated_ms=excluded.updated_ms, archived_ms=NULL",
                    (fn.id, app_id, fn.slug, fn.name, orjson.dumps(fn.config), fn.version,
                     fn.created_ms, fn.updated_ms, fn.env_id),
                )
            archived = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM functions WHERE app_id=? AND archived_ms IS NULL", (app_id,)
                )
                if r[0] not in keep
            ]
            conn.executemany(
                "UPDATE functions SET archived_ms=? WHERE id=?", [(now_ms, i) for i in archived]
            )
            return archived

        return await self.db.write(w)

    async def set_function_paused(self, fn_id: str, paused_ms: int | None) -> None:
        await self.db.write(
            lambda conn: conn.execute("UPDATE functions SET paused_ms=? WHERE id=?", (paused_ms, fn_id))
        )

    async def add_sync(self, sync: SyncRecord) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO syncs(id, app_id, url, status, error, modified, functions, created_ms) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (sync.id, sync.app_id, sync.url, sync.status, sync.error, int(sync.modified),
                 orjson.dumps(sync.functions), sync.created_ms),
            )
        )

    async def list_syncs(self, app_id: str, limit: int) -> list[SyncRecord]:
        def q(conn: sqlite3.Connection) -> list[SyncRecord]:
            rows = conn.execute(
                "SELECT id, app_id, url, status, error, modified, functions, created_ms FROM syncs "
                "WHERE app_id=? ORDER BY created_ms DESC LIMIT ?",
                (app_id, limit),
            )
            return [
                SyncRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), orjson.loads(r[6]), r[7])
                for r in rows
            ]

        return await self.db.read(q)

    async def list_app_urls(self) -> list[AppUrlRecord]:
        def q(conn: sqlite3.Connection) -> list[AppUrlRecord]:
            rows = conn.execute(
                "SELECT url, source, error, app_id, created_ms, synced_ms FROM app_urls ORDER BY url"
            )
            return [AppUrlRecord(*r) for r in rows]

        return await self.db.read(q)

    async def save_app_url(self, rec: AppUrlRecord) -> None:
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO app_urls(url, source, error, app_id, created_ms, synced_ms) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(url) DO UPDATE SET error=excluded.error, "
                "app_id=COALESCE(excluded.app_id, app_id), synced_ms=COALESCE(excluded.synced_ms, synced_ms)",
                (rec.url, rec.source, rec.error, rec.app_id, rec.created_ms, rec.synced_ms),
            )
        )

    async def delete_app_url(self, url: str) -> None:
        await self.db.write(lambda conn: conn.execute("DELETE FROM app_urls WHERE url=?", (url,)))

    async def revoke_session(self, session_id: str, expires_ms: int, now_ms: int) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM revoked_sessions WHERE expires_ms < ?", (now_ms,))
            conn.execute("INSERT INTO revoked_sessions(session_id, expires_ms) VALUES (?, ?) "
                         "ON CONFLICT(session_id) DO NOTHING", (session_id, expires_ms))

        await self.db.write(w)

    async def session_revoked(self, session_id: str) -> bool:
        return await self.db.read(lambda conn: conn.execute(
            "SELECT 1 FROM revoked_sessions WHERE session_id=?", (session_id,)).fetchone() is not None)
