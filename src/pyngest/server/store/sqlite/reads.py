"""The dashboard's reads on SQLite: run filters, aggregates for charts, and the records of bulk
cancellations and replays.

Run ids are ULIDs minted when a run is queued, so a run's id never sorts before the time it was
queued: "queued since A" starts the scan at the smallest id of A on the primary key (or
``runs_fn``/``runs_status``, which end in the id), newest-first pages stay index-ordered whatever
the filter, and ``queued_ms`` itself decides the exact bounds. (An id can be later than its
``queued_ms`` when the clock steps back, as ULIDs stay monotonic; so only the lower bound uses it.)
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pyngest.protocol.events import INTERNAL_PREFIX
from pyngest.protocol.ids import from_parts
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import RunQuery, Series
from pyngest.server.store.sqlite.connection import Database

_FLOOR = b"\x00" * 10
STEP_KINDS = {"StepCompleted": "completed", "StepFailed": "failed", "StepErrored": "errored"}


def _bucket(b: int, buckets: int) -> int:
    """Bucket ``buckets`` holds only the range's end millisecond: it belongs to the last one."""
    return min(b, buckets - 1)


def id_floor(ms: int) -> str:
    """The smallest run id minted at ``ms`` or later."""
    return from_parts(max(ms, 0), _FLOOR)


def env_terms(env_id: str) -> list[str]:
    """The filter on one environment (one ``?``). The env indexes hold the rows of the other
    environments than the default one only; the literal term lets both databases use them."""
    terms = ["env_id = ?"]
    if env_id != DEFAULT_ENV:
        terms.append(f"env_id <> '{DEFAULT_ENV}'")
    return terms


def event_where(names: list[str] | None, from_ms: int | None, until_ms: int | None, *,
                internal: bool = True, env_id: str | None = None) -> tuple[list[str], list[Any]]:
    """Filters on the events table (SQL both backends take, ``?`` placeholders)."""
    where: list[str] = []
    args: list[Any] = []
    if env_id is not None:
        where += env_terms(env_id)
        args.append(env_id)
    if names:
        where.append(f"name IN ({','.join('?' * len(names))})")
        args += names
    if from_ms is not None:
        where.append("received_ms >= ?")
        args.append(from_ms)
    if until_ms is not None:
        where.append("received_ms < ?")
        args.append(until_ms)
    if not internal:
        where.append(f"LOWER(SUBSTR(name, 1, {len(INTERNAL_PREFIX)})) <> ?")
        args.append(INTERNAL_PREFIX)
    return where, args


def run_where(query: RunQuery, *, time: bool = True) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if query.env_id is not None:
        where += env_terms(query.env_id)
        args.append(query.env_id)
    for column, values in (("fn_id", query.fn_ids), ("app_id", query.app_ids), ("status", query.statuses)):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args += values
    if time and query.from_ms is not None:
        where += ["id >= ?", "queued_ms >= ?"]
        args += [id_floor(query.from_ms), query.from_ms]
    if time and query.until_ms is not None:
        where.append("queued_ms < ?")
        args.append(query.until_ms)
    if query.before_id:
        where.append("id < ?")
        args.append(query.before_id)
    return where, args


def _sql_where(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def step_series_sql(query: RunQuery, bucket_ms: int, buckets: int) -> tuple[str, list[Any]]:
    """Step outcomes per bucket (``?`` placeholders): (bucket, history kind, count) rows."""
    start = query.from_ms or 0
    until = start + bucket_ms * buckets + 1
    where, args = run_where(query, time=False)
    sql = (
        "SELECT (at_ms - ?) / ?, kind, COUNT(*) FROM history WHERE at_ms >= ? AND at_ms < ? "
        f"AND kind IN ({','.join('?' * len(STEP_KINDS))})"
    )
    params: list[Any] = [start, bucket_ms, start, until, *STEP_KINDS]
    if where:
        sql += f" AND run_id IN (SELECT id FROM runs{_sql_where(where)})"
        params += args
    return sql + " GROUP BY 1, 2", params


class DashboardReads:
    db: Database

    async def count_runs(self, query: RunQuery, cap: int) -> int:
        where, args = run_where(query)
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM runs{_sql_where(where)} LIMIT ?)"
        return int(await self.db.read(lambda c: c.execute(sql, [*args, cap]).fetchone()[0]))

    async def count_events(self, names: list[str] | None, from_ms: int | None, until_ms: int | None, *,
                           internal: bool, cap: int, env_id: str | None = None) -> int:
        where, args = event_where(names, from_ms, until_ms, internal=internal, env_id=env_id)
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM events{_sql_where(where)} LIMIT ?)"
        return int(await self.db.read(lambda c: c.execute(sql, [*args, cap]).fetchone()[0]))

    async def run_counts(self, from_ms: int, until_ms: int) -> list[tuple[str, str, int]]:
        sql = ("SELECT fn_id, status, COUNT(*) FROM runs WHERE id >= ? AND queued_ms >= ? AND queued_ms < ? "
               "GROUP BY fn_id, status")
        args = (id_floor(from_ms), from_ms, until_ms)
        return await self.db.read(lambda c: [(r[0], r[1], int(r[2])) for r in c.execute(sql, args)])

    async def run_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> Series:
        start = query.from_ms or 0
        until = start + bucket_ms * buckets + 1  # the range's last millisecond counts (see _bucket)
        base, base_args = run_where(query, time=False)

        def q(conn: sqlite3.Connection) -> Series:
            series = Series(start, bucket_ms, [0] * buckets, [0] * buckets, {}, [0] * buckets)
            in_range = [*base, "id >= ?", "queued_ms >= ?", "queued_ms < ?"]
            rows = conn.execute(
                f"SELECT (queued_ms - ?) / ?, COUNT(*) FROM runs{_sql_where(in_range)} GROUP BY 1",
                [start, bucket_ms, *base_args, id_floor(start), start, until],
            )
            for b, n in rows:
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    series.queued[b] = n
            rows = conn.execute(
                f"SELECT (started_ms - ?) / ?, COUNT(*) FROM runs"
                f"{_sql_where([*base, 'started_ms >= ?', 'started_ms < ?'])} GROUP BY 1",
                [start, bucket_ms, *base_args, start, until],
            )
            for b, n in rows:
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    series.started[b] = n
            rows = conn.execute(
                f"SELECT (ended_ms - ?) / ?, status, COUNT(*) FROM runs"
                f"{_sql_where([*base, 'ended_ms >= ?', 'ended_ms < ?'])} GROUP BY 1, 2",
                [start, bucket_ms, *base_args, start, until],
            )
            for b, status, n in rows:
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    series.ended.setdefault(status, [0] * buckets)[b] = n
            # Backlog: queued and not yet picked up (started, or ended without starting).
            left = "COALESCE(started_ms, ended_ms)"
            waiting = conn.execute(
                f"SELECT COUNT(*) FROM runs{_sql_where([*base, 'queued_ms < ?', f'({left} IS NULL OR {left} >= ?)'])}",
                [*base_args, start, start],
            ).fetchone()[0]
            leaving = [0] * buckets
            for b, n in conn.execute(
                f"SELECT ({left} - ?) / ?, COUNT(*) FROM runs"
                f"{_sql_where([*base, f'{left} >= ?', f'{left} < ?', 'queued_ms < ?'])} GROUP BY 1",
                [start, bucket_ms, *base_args, start, until, until],
            ):
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    leaving[b] = n
            for b in range(buckets):
                waiting += series.queued[b] - leaving[b]
                series.backlog[b] = max(waiting, 0)
            return series

        return await self.db.read(q)

    async def step_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> dict[str, list[int]]:
        sql, params = step_series_sql(query, bucket_ms, buckets)

        def q(conn: sqlite3.Connection) -> dict[str, list[int]]:
            out = {name: [0] * buckets for name in STEP_KINDS.values()}
            for b, kind, n in conn.execute(sql, params):
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    out[STEP_KINDS[kind]][b] = n
            return out

        return await self.db.read(q)

    async def event_names(self, from_ms: int, until_ms: int, env_id: str | None = None) -> list[tuple[str, int, int]]:
        where, args = event_where(None, None, None, env_id=env_id)
        sql = (
            "SELECT name, SUM(received_ms >= ? AND received_ms < ?), MAX(received_ms) FROM events"
            f"{_sql_where(where)} GROUP BY name ORDER BY name"
        )
        return await self.db.read(
            lambda c: [(r[0], int(r[1] or 0), int(r[2])) for r in c.execute(sql, (from_ms, until_ms, *args))]
        )

    async def event_series(self, name: str, from_ms: int, bucket_ms: int, buckets: int,
                           env_id: str | None = None) -> list[int]:
        where, env_args = event_where([name], from_ms, from_ms + bucket_ms * buckets + 1, env_id=env_id)
        sql = f"SELECT (received_ms - ?) / ?, COUNT(*) FROM events{_sql_where(where)} GROUP BY 1"
        args = (from_ms, bucket_ms, *env_args)

        def q(conn: sqlite3.Connection) -> list[int]:
            out = [0] * buckets
            for b, n in conn.execute(sql, args):
                if 0 <= b <= buckets:
                    b = _bucket(b, buckets)
                    out[b] = n
            return out

        return await self.db.read(q)

    async def event_names_by_id(self, internal_ids: list[str]) -> dict[str, str]:
        if not internal_ids:
            return {}
        sql = f"SELECT internal_id, name FROM events WHERE internal_id IN ({','.join('?' * len(internal_ids))})"
        return await self.db.read(lambda c: dict(c.execute(sql, internal_ids).fetchall()))

    async def execute_jobs_by_function(self) -> dict[str, int]:
        sql = (
            "SELECT r.fn_id, COUNT(*) FROM jobs j JOIN runs r ON r.id = j.run_id "
            "WHERE j.kind = 'execute' GROUP BY r.fn_id"
        )
        return await self.db.read(lambda c: {r[0]: int(r[1]) for r in c.execute(sql)})

