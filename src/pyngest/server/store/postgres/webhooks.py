"""The PostgreSQL store's webhooks and their failed requests (migrations 003 and 007)."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from pyngest.server.store.base import KeyTaken, WebhookFailure, WebhookRecord

_FAILURE = ("SELECT id, webhook_id, received_ms, error, body, headers::text, query, replayed_ms, event_ids::text "
            "FROM webhook_failures")


def _failure(r: asyncpg.Record) -> WebhookFailure:
    return WebhookFailure(r[0], r[1], r[2], r[3], bytes(r[4]), orjson.loads(r[5]), r[6], r[7],
                          orjson.loads(r[8]) if r[8] is not None else None)


def _json(value: Any) -> str | None:
    return orjson.dumps(value).decode() if value is not None else None


class PostgresWebhooks:
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        raise NotImplementedError

    async def execute(self, sql: str, *args: Any) -> str:
        raise NotImplementedError

    async def list_webhooks(self) -> list[WebhookRecord]:
        rows = await self.fetch("SELECT id, key, name, transform, created_ms, updated_ms, env_id FROM webhooks "
                                "ORDER BY created_ms, id")
        return [WebhookRecord(*r) for r in rows]

    async def save_webhook(self, hook: WebhookRecord) -> None:
        try:
            await self.execute(
                "INSERT INTO webhooks (id, key, name, transform, created_ms, updated_ms, env_id) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7) "
                "ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, name = EXCLUDED.name, "
                "transform = EXCLUDED.transform, updated_ms = EXCLUDED.updated_ms",
                hook.id, hook.key, hook.name, hook.transform, hook.created_ms, hook.updated_ms, hook.env_id)
        except asyncpg.UniqueViolationError as exc:
            raise KeyTaken(hook.key) from exc

    async def delete_webhook(self, hook_id: str) -> None:
        await self.execute(
            "WITH gone AS (DELETE FROM webhook_failures WHERE webhook_id = $1) DELETE FROM webhooks WHERE id = $1",
            hook_id)

    async def add_webhook_failure(self, failure: WebhookFailure, keep: int) -> None:
        f = failure
        await self.execute(
            "INSERT INTO webhook_failures (id, webhook_id, received_ms, error, body, headers, query, replayed_ms, "
            "event_ids) VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9::jsonb)",
            f.id, f.webhook_id, f.received_ms, f.error, f.body, _json(f.headers), f.query, f.replayed_ms,
            _json(f.event_ids))
        # the cap: everything older than the webhook's newest `keep` (an index range)
        await self.execute(
            "DELETE FROM webhook_failures WHERE webhook_id = $1 AND id < (SELECT id FROM webhook_failures "
            "WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)", f.webhook_id, keep - 1)

    async def webhook_failures(self, hook_id: str | None, before_id: str | None, limit: int) -> list[WebhookFailure]:
        rows = await self.fetch(
            f"{_FAILURE} WHERE id < $1 AND ($2::text IS NULL OR webhook_id = $2) ORDER BY id DESC LIMIT $3",
            before_id or "~", hook_id, limit)
        return [_failure(r) for r in rows]

    async def get_webhook_failure(self, failure_id: str) -> WebhookFailure | None:
        rows = await self.fetch(f"{_FAILURE} WHERE id = $1", failure_id)
        return _failure(rows[0]) if rows else None

    async def update_webhook_failure(self, failure: WebhookFailure) -> None:
        f = failure
        await self.execute("UPDATE webhook_failures SET error = $2, replayed_ms = $3, event_ids = $4::jsonb "
                           "WHERE id = $1", f.id, f.error, f.replayed_ms, _json(f.event_ids))
