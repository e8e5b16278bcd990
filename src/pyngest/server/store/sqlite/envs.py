"""Environments and their keys in SQLite (the SQL is shared with PostgreSQL: ``?`` placeholders
and upserts both accept)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from pyngest.server.store.base import EnvRecord, EventKeyRecord, SigningKeyRecord
from pyngest.server.store.sqlite.connection import Database

LIST_ENVS = ("SELECT id, name, kind, parent_id, archived_ms, created_ms, deployed_ms, auto_archive_ms FROM envs "
             "ORDER BY created_ms, name")
SAVE_ENV = (
    "INSERT INTO envs (id, name, kind, parent_id, archived_ms, created_ms, deployed_ms, auto_archive_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, archived_ms = excluded.archived_ms"
)
UPDATE_ENV = "UPDATE envs SET archived_ms = ?, auto_archive_ms = ? WHERE id = ?"
# The right-hand sides read the row as it was: an environment archived by auto-archive
# (archived_ms = auto_archive_ms) is active again; one archived by hand stays archived.
ENV_DEPLOYED = (
    "UPDATE envs SET deployed_ms = ?, "
    "archived_ms = CASE WHEN archived_ms = auto_archive_ms THEN NULL ELSE archived_ms END, "
    "auto_archive_ms = CASE WHEN auto_archive_ms IS NULL THEN NULL ELSE CAST(? AS BIGINT) END "
    "WHERE id = ? AND kind = 'branch'"
)
ARCHIVE_DUE_ENVS = (
    "UPDATE envs SET archived_ms = auto_archive_ms "
    "WHERE archived_ms IS NULL AND auto_archive_ms IS NOT NULL AND auto_archive_ms <= ?"
)
LIST_SIGNING_KEYS = "SELECT id, env_id, key, state, created_ms FROM signing_keys ORDER BY created_ms, id"
SAVE_SIGNING_KEY = (
    "INSERT INTO signing_keys (id, env_id, key, state, created_ms) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET state = excluded.state"
)
DELETE_SIGNING_KEY = "DELETE FROM signing_keys WHERE id = ?"
LIST_EVENT_KEYS = "SELECT id, env_id, name, hash, hint, filter, created_ms FROM event_keys ORDER BY created_ms, id"
SAVE_EVENT_KEY = (
    "INSERT INTO event_keys (id, env_id, name, hash, hint, filter, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, filter = excluded.filter"
)
DELETE_EVENT_KEY = "DELETE FROM event_keys WHERE id = ?"


def env_row(env: EnvRecord) -> tuple[Any, ...]:
    return (env.id, env.name, env.kind, env.parent_id, env.archived_ms, env.created_ms, env.deployed_ms,
            env.auto_archive_ms)


def signing_key_row(key: SigningKeyRecord) -> tuple[Any, ...]:
    return (key.id, key.env_id, key.key, key.state, key.created_ms)


def event_key_row(key: EventKeyRecord) -> tuple[Any, ...]:
    return (key.id, key.env_id, key.name, key.hash, key.hint,
            orjson.dumps(key.filter).decode() if key.filter is not None else None, key.created_ms)


def event_key_from(row: Any) -> EventKeyRecord:
    return EventKeyRecord(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]) if row[5] else None, row[6])


class EnvTables:
    db: Database

    async def list_envs(self) -> list[EnvRecord]:
        return await self.db.read(lambda conn: [EnvRecord(*r) for r in conn.execute(LIST_ENVS)])

    async def save_env(self, env: EnvRecord) -> None:
        await self.db.write(lambda conn: conn.execute(SAVE_ENV, env_row(env)))

    async def update_env(self, env_id: str, archived_ms: int | None, auto_archive_ms: int | None) -> None:
        await self.db.write(lambda conn: conn.execute(UPDATE_ENV, (archived_ms, auto_archive_ms, env_id)))

    async def env_deployed(self, env_id: str, now_ms: int, auto_archive_ms: int) -> None:
        await self.db.write(lambda conn: conn.execute(ENV_DEPLOYED, (now_ms, auto_archive_ms, env_id)))

    async def archive_due_envs(self, now_ms: int) -> int:
        return await self.db.write(lambda conn: conn.execute(ARCHIVE_DUE_ENVS, (now_ms,)).rowcount)

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return await self.db.read(lambda conn: [SigningKeyRecord(*r) for r in conn.execute(LIST_SIGNING_KEYS)])

    async def save_signing_keys(self, keys: list[SigningKeyRecord]) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.executemany(SAVE_SIGNING_KEY, [signing_key_row(k) for k in keys])

        await self.db.write(w)

    async def delete_signing_key(self, key_id: str) -> None:
        await self.db.write(lambda conn: conn.execute(DELETE_SIGNING_KEY, (key_id,)))

    async def list_event_keys(self) -> list[EventKeyRecord]:
        return await self.db.read(lambda conn: [event_key_from(r) for r in conn.execute(LIST_EVENT_KEYS)])

    async def save_event_key(self, key: EventKeyRecord) -> None:
        await self.db.write(lambda conn: conn.execute(SAVE_EVENT_KEY, event_key_row(key)))

    async def delete_event_key(self, key_id: str) -> None:
        await self.db.write(lambda conn: conn.execute(DELETE_EVENT_KEY, (key_id,)))
