"""The dashboard's reads on PostgreSQL: the same filters and aggregates as on SQLite
(store/sqlite/reads.py, whose ``run_where`` builds the run filter for both)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from pyngest.server.store.base import RunQuery, Series
from pyngest.server.store.sqlite.reads import STEP_KINDS, event_where, id_floor, step_series_sql
from pyngest.server.store.sqlite.reads import run_where as _sqlite_run_where

T = TypeVar("T")


def placeholders(sql: str) -> str:
    """``?`` placeholders (the SQLite spelling the shared filters use) → ``$1, $2, …``."""
    parts = sql.split("?")
    return "".join(p + (f"${i}" if i < len(parts) else "") for i, p in enumerate(parts, start=1))


def run_where(query: RunQuery, *, time: bool = True) -> tuple[list[str], list[Any]]:
    return _sqlite_run_where(query, time=time)


def _where(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _bucket(b: int, buckets: int) -> int:
    return min(b, buckets - 1)


class PostgresDashboardReads:
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def _q(self, sql: str, args: list[Any]) -> list[asyncpg.Record]:
        return await self.fetch(placeholders(sql), *args)

    async def count_runs(self, query: RunQuery, cap: int) -> int:
        where, args = run_where(query)
        rows = await self._q(f"SELECT COUNT(*) FROM (SELECT 1 FROM runs{_where(where)} LIMIT ?) AS t", [*args, cap])
        return int(rows[0][0])

    async def count_events(self, names: list[str] | None, from_ms: int | None, until_ms: int | None, *,
                           internal: bool, cap: int, env_id: str | None = None) -> int:
        where, args = event_where(names, from_ms, until_ms, internal=internal, env_id=env_id)
        rows = await self._q(f"SELECT COUNT(*) FROM (SELECT 1 FROM events{_where(where)} LIMIT ?) AS t", [*args, cap])
        return int(rows[0][0])

    async def run_counts(self, from_ms: int, until_ms: int) -> list[tuple[str, str, int]]:
        rows = await self._q(
            "SELECT fn_id, status, COUNT(*) FROM runs WHERE id >= ? AND queued_ms >= ? AND queued_ms < ? "
            "GROUP BY fn_id, status", [id_floor(from_ms), from_ms, until_ms])
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def run_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> Series:
        start = query.from_ms or 0
        until = start + bucket_ms * buckets + 1  # the range's last millisecond counts
        base, base_args = run_where(query, time=False)
        series = Series(start, bucket_ms, [0] * buckets, [0] * buckets, {}, [0] * buckets)
        in_range = [*base, "id >= ?", "queued_ms >= ?", "queued_ms < ?"]
        for b, n in await self._q(
            f"SELECT (queued_ms - ?) / ?, COUNT(*) FROM runs{_where(in_range)} GROUP BY 1",
            [start, bucket_ms, *base_args, id_floor(start), start, until],
        ):
            if 0 <= b <= buckets:
                series.queued[_bucket(b, buckets)] = n
        for b, n in await self._q(
            f"SELECT (started_ms - ?) / ?, COUNT(*) FROM runs{_where([*base, 'started_ms >= ?', 'started_ms < ?'])} "
            "GROUP BY 1", [start, bucket_ms, *base_args, start, until],
        ):
            if 0 <= b <= buckets:
                series.started[_bucket(b, buckets)] = n
        for b, status, n in await self._q(
            f"SELECT (ended_ms - ?) / ?, status, COUNT(*) FROM runs{_where([*base, 'ended_ms >= ?', 'ended_ms < ?'])} "
            "GROUP BY 1, 2", [start, bucket_ms, *base_args, start, until],
        ):
            if 0 <= b <= buckets:
                series.ended.setdefault(status, [0] * buckets)[_bucket(b, buckets)] = n
        # Backlog: queued and not yet picked up (started, or ended without starting).
        left = "COALESCE(started_ms, ended_ms)"
        rows = await self._q(
            f"SELECT COUNT(*) FROM runs{_where([*base, 'queued_ms < ?', f'({left} IS NULL OR {left} >= ?)'])}",
            [*base_args, start, start])
        waiting = int(rows[0][0])
        leaving = [0] * buckets
        for b, n in await self._q(
            f"SELECT ({left} - ?) / ?, COUNT(*) FROM runs"
            f"{_where([*base, f'{left} >= ?', f'{left} < ?', 'queued_ms < ?'])} GROUP BY 1",
            [start, bucket_ms, *base_args, start, until, until],
        ):
            if 0 <= b <= buckets:
                leaving[_bucket(b, buckets)] = n
        for b in range(buckets):
            waiting += series.queued[b] - leaving[b]
            series.backlog[b] = max(waiting, 0)
        return series

    async def step_series(self, query: RunQuery, bucket_ms: int, buckets: int) -> dict[str, list[int]]:
        sql, params = step_series_sql(query, bucket_ms, buckets)
        out = {name: [0] * buckets for name in STEP_KINDS.values()}
        for b, kind, n in await self._q(sql, params):
            if 0 <= b <= buckets:
                out[STEP_KINDS[kind]][_bucket(b, buckets)] = n
        return out

    async def event_names(self, from_ms: int, until_ms: int, env_id: str | None = None) -> list[tuple[str, int, int]]:
        where, args = event_where(None, None, None, env_id=env_id)
        rows = await self._q(
            "SELECT name, COUNT(*) FILTER (WHERE received_ms >= ? AND received_ms < ?), MAX(received_ms) "
            f"FROM events{_where(where)} GROUP BY name ORDER BY name", [from_ms, until_ms, *args])
        return [(r[0], int(r[1] or 0), int(r[2])) for r in rows]

    async def event_series(self, name: str, from_ms: int, bucket_ms: int, buckets: int,
                           env_id: str | None = None) -> list[int]:
        out = [0] * buckets
        where, args = event_where([name], from_ms, from_ms + bucket_ms * buckets + 1, env_id=env_id)
        for b, n in await self._q(f"SELECT (received_ms - ?) / ?, COUNT(*) FROM events{_where(where)} GROUP BY 1",
                                  [from_ms, bucket_ms, *args]):
            if 0 <= b <= buckets:
                out[_bucket(b, buckets)] = n
        return out

    async def event_names_by_id(self, internal_ids: list[str]) -> dict[str, str]:
        if not internal_ids:
            return {}
        rows = await self.fetch("SELECT internal_id, name FROM events WHERE internal_id = ANY($1::text[])",
                                internal_ids)
        return {r[0]: r[1] for r in rows}

    async def execute_jobs_by_function(self) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT r.fn_id, COUNT(*) FROM jobs j JOIN runs r ON r.id = j.run_id WHERE j.kind = 'execute' "
            "GROUP BY r.fn_id")
        return {r[0]: int(r[1]) for r in rows}
