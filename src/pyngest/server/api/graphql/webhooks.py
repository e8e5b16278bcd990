"""GraphQL fields for webhooks (the schema's ``Webhook`` types), over webhooks/manage.py."""

from __future__ import annotations

from typing import Any

from pyngest.server.service import Service
from pyngest.server.store.base import WebhookFailure, WebhookRecord
from pyngest.server.webhooks.manage import WebhookError, webhooks_of
from pyngest.server.webhooks.sandbox import DEFAULT_TRANSFORM


class WebhookFields:
    def __init__(self, service: Service) -> None:
        self.hooks = webhooks_of(service)

    def root(self) -> dict[str, Any]:
        return {
            "webhooks": self.q_webhooks, "webhook": self.q_webhook,
            "defaultWebhookTransform": lambda *_: DEFAULT_TRANSFORM,
            "createWebhook": self.m_create, "updateWebhook": self.m_update, "deleteWebhook": self.m_delete,
            "testWebhookTransform": self.m_test, "replayWebhookFailure": self.m_replay,
        }

    def webhook(self, hook: WebhookRecord) -> dict[str, Any]:
        async def failures(info: Any, limit: int = 20, before: str | None = None) -> list[dict[str, Any]]:
            return [_failure(f) for f in await self.hooks.failures(hook.id, before, limit)]

        return {"id": hook.id, "name": hook.name, "key": hook.key, "path": f"/e/{hook.key}",
                "transform": hook.transform, "createdAt": hook.created_ms, "updatedAt": hook.updated_ms,
                "failures": failures}

    async def q_webhooks(self, info: Any) -> list[dict[str, Any]]:
        return [self.webhook(h) for h in await self.hooks.all()]

    async def q_webhook(self, info: Any, id: str) -> dict[str, Any] | None:  # noqa: A002
        try:
            return self.webhook(await self.hooks.get(id))
        except WebhookError:
            return None

    async def m_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        return self.webhook(await self.hooks.create(input))

    async def m_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        return self.webhook(await self.hooks.update(id, input))

    async def m_delete(self, info: Any, id: str) -> str:  # noqa: A002
        return (await self.hooks.delete(id)).id

    async def m_test(self, info: Any, payload: str, transform: str | None = None, headers: Any = None,
                     query: str | None = None) -> dict[str, Any]:
        return await self.hooks.test({"transform": transform, "payload": payload, "headers": headers,
                                      "query": query})

    async def m_replay(self, info: Any, id: str) -> dict[str, Any]:  # noqa: A002
        status, answer = await self.hooks.replay(id)
        return {"ids": answer["ids"], "error": answer.get("error") if status != 200 else None}


def _failure(f: WebhookFailure) -> dict[str, Any]:
    return {"id": f.id, "webhookID": f.webhook_id, "receivedAt": f.received_ms, "error": f.error,
            "body": f.body.decode("utf-8", "replace"), "headers": f.headers, "query": f.query,
            "replayedAt": f.replayed_ms, "eventIDs": f.event_ids}
