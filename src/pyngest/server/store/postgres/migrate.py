"""Creating and upgrading the PostgreSQL schema.

Numbered migrations (``migrations/NNN.sql``) run in order inside one transaction, under a
session advisory lock, so two processes starting at once on an empty database do not race:
the second waits, then finds the schema current. The server-side functions
(``functions.sql``, with the set-wise statement forms of ``forms.py``) are replaced at every start.
"""

from __future__ import annotations

import logging
import secrets
from importlib import resources

import asyncpg

from pyngest.server.store.postgres.forms import functions_sql

log = logging.getLogger("pyngest.store")

SCHEMA_VERSION = 9
MIGRATION_LOCK = 0x70796E67_65737401  # "pyngest" + 1: the key of the migration advisory lock
DEFAULT_SHARDS = 32


class SchemaError(RuntimeError):
    """The database cannot be used by this pyngest; the message says what to do."""


async def migrate(conn: asyncpg.Connection, *, shards: int = DEFAULT_SHARDS) -> dict[str, str]:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the cluster's settings (``meta``)."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        exists = await conn.fetchval("SELECT to_regclass('meta') IS NOT NULL")
        current = 0
        if exists:
            row = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
            current = int(row) if row is not None else 0
        if current > SCHEMA_VERSION:
            raise SchemaError(
                f"the database has pyngest schema version {current}, newer than this pyngest understands "
                f"({SCHEMA_VERSION}): upgrade pyngest, or point --postgres-uri at another database")
        package = resources.files("pyngest.server.store.postgres")
        async with conn.transaction():
            for version in range(current + 1, SCHEMA_VERSION + 1):
                script = package.joinpath("migrations").joinpath(f"{version:03d}.sql")
                await conn.execute(script.read_text())
                log.info("postgres schema: applied migration %03d", version)
            if current == 0:
                await conn.executemany(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)",
                    [("cluster_id", secrets.token_hex(8)), ("shards", str(shards)), ("registry_version", "0")],
                )
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', $1) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", str(SCHEMA_VERSION))
            count = int(await conn.fetchval("SELECT value FROM meta WHERE key = 'shards'"))
            await conn.execute(
                "INSERT INTO shards (shard) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING", count)
            await conn.execute(functions_sql(package.joinpath("functions.sql").read_text()))
        return {r["key"]: r["value"] for r in await conn.fetch("SELECT key, value FROM meta")}
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
