"""GraphQL fields for webhooks (the schema's ``Webhook`` types), over webhooks/manage.py."""

from __future__ import annotations

from typing import Any

from pyngest.server.api.envs import env_of
from pyngest.server.api.webhooks import webhook_path
from pyngest.server.service import Service
from pyngest.server.store.base import WebhookFailure, WebhookRecord
from pyngest.server.webhooks.manage import WebhookError, webhooks_of
from pyngest.server.webhooks.sandbox import DEFAULT_TRANSFORM


class WebhookFields:
    def __init__(self, service: Service) -> None:
        self.s = service
        self.hooks = webhooks_of(service)

    def root(self) -> dict[str, Any]:
        return {
            "webhooks": self.q_webhooks, "webhook": self.q_webhook,
            "defaultWebhookTransform": lambda *_: DEFAULT_TRANSFORM,
            "createWebhook": self.m_create, "updateWebhook": self.m_update, "deleteWebhook": self.m_delete,
            "testWebhookTransform": self.m_test, "replayWebhookFailure": self.m_replay,
        }

    def webhook(self, hook: WebhookRecord, env_id: str) -> dict[str, Any]:
        async def failures(info: Any, limit: int = 20, before: str | None = None) -> list[dict[str, Any]]:
            return [_failure(f) for f in await self.hooks.failures(hook, before, limit)]

        return {"id": hook.id, "name": hook.name, "key": hook.key, "path": webhook_path(hook, self.s, env_id),
                "environmentID": hook.env_id, "transform": hook.transform, "createdAt": hook.created_ms,
                "updatedAt": hook.updated_ms, "failures": failures}

    # each acts on the webhooks of the operation's environment (a branch's are its parent's)
    async def q_webhooks(self, info: Any) -> list[dict[str, Any]]:
        env = env_of(info)
        return [self.webhook(h, env) for h in await self.hooks.all(env)]

    async def q_webhook(self, info: Any, id: str) -> dict[str, Any] | None:  # noqa: A002
        env = env_of(info)
        try:
            return self.webhook(await self.hooks.get(env, id), env)
        except WebhookError:
            return None

    async def m_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        env = env_of(info)
        return self.webhook(await self.hooks.create(env, input), env)

    async def m_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        env = env_of(info)
        return self.webhook(await self.hooks.update(env, id, input), env)

    async def m_delete(self, info: Any, id: str) -> str:  # noqa: A002
        return (await self.hooks.delete(env_of(info), id)).id

    async def m_test(self, info: Any, payload: str, transform: str | None = None, headers: Any = None,
                     query: str | None = None) -> dict[str, Any]:
        return await self.hooks.test({"transform": transform, "payload": payload, "headers": headers,
                                      "query": query})

    async def m_replay(self, info: Any, id: str) -> dict[str, Any]:  # noqa: A002
        status, answer = await self.hooks.replay(env_of(info), id)
        return {"ids": answer["ids"], "error": answer.get("error") if status != 200 else None}


def _failure(f: WebhookFailure) -> dict[str, Any]:
    return {"id": f.id, "webhookID": f.webhook_id, "receivedAt": f.received_ms, "error": f.error,
            "body": f.body.decode("utf-8", "replace"), "headers": f.headers, "query": f.query,
            "replayedAt": f.replayed_ms, "eventIDs": f.event_ids}
