"""The SQLite store's webhooks and their failed requests (migrations 004 and 007)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from pyngest.server.store.base import KeyTaken, WebhookFailure, WebhookRecord
from pyngest.server.store.sqlite.connection import Database

_FAILURE = "SELECT id, webhook_id, received_ms, error, body, headers, query, replayed_ms, event_ids FROM webhook_failures"


def _failure(r: tuple[Any, ...]) -> WebhookFailure:
    return WebhookFailure(r[0], r[1], r[2], r[3], bytes(r[4]), orjson.loads(r[5]), r[6], r[7],
                          orjson.loads(r[8]) if r[8] is not None else None)


class SqliteWebhooks:
    db: Database

    async def list_webhooks(self) -> list[WebhookRecord]:
        def q(conn: sqlite3.Connection) -> list[WebhookRecord]:
            rows = conn.execute("SELECT id, key, name, transform, created_ms, updated_ms, env_id FROM webhooks "
                                "ORDER BY created_ms, id")
            return [WebhookRecord(*r) for r in rows]

        return await self.db.read(q)

    async def save_webhook(self, hook: WebhookRecord) -> None:
        def w(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO webhooks (id, key, name, transform, created_ms, updated_ms, env_id) "
                    "VALUES (?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET key=excluded.key, name=excluded.name, "
                    "transform=excluded.transform, updated_ms=excluded.updated_ms",
                    (hook.id, hook.key, hook.name, hook.transform, hook.created_ms, hook.updated_ms, hook.env_id))
            except sqlite3.IntegrityError as exc:
                raise KeyTaken(hook.key) from exc

        await self.db.write(w)

    async def delete_webhook(self, hook_id: str) -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM webhook_failures WHERE webhook_id=?", (hook_id,))
            conn.execute("DELETE FROM webhooks WHERE id=?", (hook_id,))

        await self.db.write(w)

    async def add_webhook_failure(self, failure: WebhookFailure, keep: int) -> None:
        f = failure

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO webhook_failures (id, webhook_id, received_ms, error, body, headers, query, "
                "replayed_ms, event_ids) VALUES (?,?,?,?,?,?,?,?,?)",
                (f.id, f.webhook_id, f.received_ms, f.error, f.body, orjson.dumps(f.headers), f.query,
                 f.replayed_ms, orjson.dumps(f.event_ids) if f.event_ids is not None else None))
            # the cap: everything older than the webhook's newest `keep` (an index range)
            conn.execute(
                "DELETE FROM webhook_failures WHERE webhook_id=? AND id < (SELECT id FROM webhook_failures "
                "WHERE webhook_id=? ORDER BY id DESC LIMIT 1 OFFSET ?)", (f.webhook_id, f.webhook_id, keep - 1))

        await self.db.write(w)

    async def webhook_failures(self, hook_id: str | None, before_id: str | None, limit: int) -> list[WebhookFailure]:
        where, args = ["id < ?"], [before_id or "~"]
        if hook_id is not None:
            where.append("webhook_id = ?")
            args.append(hook_id)

        def q(conn: sqlite3.Connection) -> list[WebhookFailure]:
            rows = conn.execute(f"{_FAILURE} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit))
            return [_failure(r) for r in rows]

        return await self.db.read(q)

    async def get_webhook_failure(self, failure_id: str) -> WebhookFailure | None:
        def q(conn: sqlite3.Connection) -> WebhookFailure | None:
            row = conn.execute(f"{_FAILURE} WHERE id=?", (failure_id,)).fetchone()
            return _failure(row) if row else None

        return await self.db.read(q)

    async def update_webhook_failure(self, failure: WebhookFailure) -> None:
        f = failure
        await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_failures SET error=?, replayed_ms=?, event_ids=? WHERE id=?",
            (f.error, f.replayed_ms, orjson.dumps(f.event_ids) if f.event_ids is not None else None, f.id)))
