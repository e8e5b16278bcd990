"""Turning a fresh SQLite database back into what an older pyngest left, to test upgrades."""

from __future__ import annotations

import sqlite3


def as_version_3(conn: sqlite3.Connection) -> None:
    """Undo migrations 005 and 007 (environments): no env tables, no env_id columns, version 3. (The old
    UNIQUE constraints on apps.name and functions.slug are not put back: 005 rebuilds both.)"""
    for index in ("apps_env_name", "functions_env_slug", "events_env", "runs_env"):
        conn.execute(f"DROP INDEX {index}")
    for table in ("envs", "signing_keys", "event_keys"):
        conn.execute(f"DROP TABLE {table}")
    for table in ("apps", "functions", "events", "runs"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN env_id")
    # and migration 007 (a webhook's environment); 004's webhook tables are made only if missing
    conn.execute("DROP INDEX webhooks_env")
    conn.execute("ALTER TABLE webhooks DROP COLUMN env_id")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
