"""Environments and their keys in PostgreSQL: the SQLite backend's SQL, with ``$n`` placeholders.
Every change bumps the registry's version, so the other processes of a cluster read them again."""

from __future__ import annotations

from typing import Any

import asyncpg

from pyngest.server.store.base import EnvRecord, EventKeyRecord, SigningKeyRecord
from pyngest.server.store.postgres.reads import placeholders
from pyngest.server.store.sqlite import envs as sql


class PostgresEnvTables:
    _BUMP = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'registry_version'"

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def _read(self, fn: Any) -> Any:
        raise NotImplementedError

    async def _changed(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        async def w(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.executemany(placeholders(statement), rows)
                await conn.execute(self._BUMP)

        await self._read(w)

    async def list_envs(self) -> list[EnvRecord]:
        return [EnvRecord(*r) for r in await self.fetch(sql.LIST_ENVS)]

    async def save_env(self, env: EnvRecord) -> None:
        await self._changed(sql.SAVE_ENV, [sql.env_row(env)])

    async def update_env(self, env_id: str, archived_ms: int | None, auto_archive_ms: int | None) -> None:
        await self._changed(sql.UPDATE_ENV, [(archived_ms, auto_archive_ms, env_id)])

    async def env_deployed(self, env_id: str, now_ms: int, auto_archive_ms: int) -> None:
        await self._changed(sql.ENV_DEPLOYED, [(now_ms, auto_archive_ms, env_id)])

    async def archive_due_envs(self, now_ms: int) -> int:
        """Row locks settle two processes archiving at once: the second re-reads the row the
        first changed, finds it archived and leaves it. The version moves only if a row did, so
        the other processes read the archived environments again."""

        async def w(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                status = await conn.execute(placeholders(sql.ARCHIVE_DUE_ENVS), now_ms)
                count = int(status.split()[-1])
                if count:
                    await conn.execute(self._BUMP)
                return count

        return int(await self._read(w))

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return [SigningKeyRecord(*r) for r in await self.fetch(sql.LIST_SIGNING_KEYS)]

    async def save_signing_keys(self, keys: list[SigningKeyRecord]) -> None:
        await self._changed(sql.SAVE_SIGNING_KEY, [sql.signing_key_row(k) for k in keys])

    async def delete_signing_key(self, key_id: str) -> None:
        await self._changed(sql.DELETE_SIGNING_KEY, [(key_id,)])

    async def list_event_keys(self) -> list[EventKeyRecord]:
        return [sql.event_key_from(r) for r in await self.fetch(sql.LIST_EVENT_KEYS)]

    async def save_event_key(self, key: EventKeyRecord) -> None:
        await self._changed(sql.SAVE_EVENT_KEY, [sql.event_key_row(key)])

    async def delete_event_key(self, key_id: str) -> None:
        await self._changed(sql.DELETE_EVENT_KEY, [(key_id,)])
