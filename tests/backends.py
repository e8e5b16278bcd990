"""Which store the integration tests run on: SQLite (the default) or PostgreSQL + Redis.

``PYNGEST_TEST_BACKEND=postgres`` runs the same tests on the scale-out backend, each test in a
schema of its own in the machine's PostgreSQL (``PYNGEST_TEST_POSTGRES_URI``, default the local
``test`` database) with Redis at ``PYNGEST_TEST_REDIS_URI``.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import asyncpg

BACKEND = os.environ.get("PYNGEST_TEST_BACKEND", "sqlite")
POSTGRES_URI = os.environ.get("PYNGEST_TEST_POSTGRES_URI", "postgresql://127.0.0.1:5432/test")
REDIS_URI = os.environ.get("PYNGEST_TEST_REDIS_URI", "redis://127.0.0.1:6379/0")


# schemas this test process created; dropped when the session ends (tests/conftest.py)
created: set[str] = set()


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def schema_for(directory: object) -> str:
    """One schema per data directory: a server restarted on the same directory finds its data."""
    return "t_" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]


def postgres_uri(schema: str, base: str | None = None) -> str:
    """The URI of a schema of its own (asyncpg passes unknown query parameters as settings)."""
    base = base or POSTGRES_URI
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}search_path={schema}"


async def create_schema(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URI)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        created.add(schema)
    finally:
        await conn.close()


async def drop_created() -> None:
    if not created:
        return
    conn = await asyncpg.connect(POSTGRES_URI)
    try:
        for schema in sorted(created):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        created.clear()
    finally:
        await conn.close()


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URI)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def create_schema_sync(schema: str) -> None:
    """:func:`create_schema` from synchronous code (even inside a running event loop)."""
    import asyncio
    import threading

    errors: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(create_schema(schema))
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
