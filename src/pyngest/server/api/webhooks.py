"""REST v1 routes for webhooks (``/v1/webhooks``), their failed requests, and trying a transform.

Upstream documents ``PUT /v1/webhooks/{id}`` with ``{name, transform}`` (the webhook-transform-sync
example); the other routes follow the same shape. Each acts on the webhooks of the environment
the request selects (signing key, ``x-inngest-env``, the dashboard's environment); a branch
environment's are its parent's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol import headers as H
from pyngest.protocol.durations import iso_ms
from pyngest.server.api.manage import NotFound, OperationError, Operations
from pyngest.server.api.manage_rest import ManageREST
from pyngest.server.service import Service
from pyngest.server.store.base import WebhookFailure, WebhookRecord
from pyngest.server.webhooks.manage import WebhookError, webhooks_of


def webhook_path(hook: WebhookRecord, service: Service, env_id: str) -> str:
    """The webhook's path as the caller's environment uses it: a branch environment's requests
    name the branch (``?x-inngest-env=``), its parent's go to the parent."""
    env = service.registry.envs.get(env_id)
    path = f"/e/{hook.key}"
    if env is not None and env.kind == "branch" and env.id != hook.env_id:
        path += "?" + urlencode({H.ENV: env.name})
    return path


def webhook_json(hook: WebhookRecord, req: Request, service: Service) -> dict[str, Any]:
    path = webhook_path(hook, service, req.state.env)
    return {"id": hook.id, "name": hook.name, "url": f"{str(req.base_url).rstrip('/')}{path}", "key": hook.key,
            "environment_id": hook.env_id, "transform": hook.transform, "created_at": iso_ms(hook.created_ms),
            "updated_at": iso_ms(hook.updated_ms)}


def failure_json(f: WebhookFailure) -> dict[str, Any]:
    return {"id": f.id, "webhook_id": f.webhook_id, "received_at": iso_ms(f.received_ms), "error": f.error,
            "body": f.body.decode("utf-8", "replace"), "headers": f.headers, "query": f.query,
            "replayed_at": iso_ms(f.replayed_ms) if f.replayed_ms else None, "event_ids": f.event_ids}


class WebhooksREST(ManageREST):
    def __init__(self, service: Service, ops: Operations) -> None:
        super().__init__(service, ops)
        self.hooks = webhooks_of(service)

    async def _hook_call(self, request: Request, handler: Any) -> Response:
        async def guarded(req: Request, body: Any) -> tuple[Any, int]:
            try:
                result: tuple[Any, int] = await handler(req, body)
            except WebhookError as exc:  # answered 404 or 400 by _call
                raise (NotFound if exc.status == 404 else OperationError)(str(exc)) from exc
            return result
        return await self._call(request, guarded)

    async def list_webhooks(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            return [webhook_json(w, req, self.s) for w in await self.hooks.all(req.state.env)], 200
        return await self._hook_call(request, h)

    async def create_webhook(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            return webhook_json(await self.hooks.create(req.state.env, body), req, self.s), 200
        return await self._hook_call(request, h)

    async def get_webhook(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            return webhook_json(await self.hooks.get(req.state.env, req.path_params["webhook_id"]), req, self.s), 200
        return await self._hook_call(request, h)

    async def update_webhook(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            hook = await self.hooks.update(req.state.env, req.path_params["webhook_id"], body)
            return webhook_json(hook, req, self.s), 200
        return await self._hook_call(request, h)

    async def delete_webhook(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            hook = await self.hooks.delete(req.state.env, req.path_params["webhook_id"])
            return {"id": hook.id, "deleted": True}, 200
        return await self._hook_call(request, h)

    async def test_transform(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            return await self.hooks.test(body), 200
        return await self._hook_call(request, h)

    async def list_failures(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            hook = await self.hooks.get(req.state.env, req.path_params["webhook_id"])
            try:
                limit = int(req.query_params.get("limit", "50"))
            except ValueError as exc:
                raise WebhookError("'limit' must be a number") from exc
            found = await self.hooks.failures(hook, req.query_params.get("before"), limit)
            return [failure_json(f) for f in found], 200
        return await self._hook_call(request, h)

    async def replay_failure(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            status, answer = await self.hooks.replay(req.state.env, req.path_params["failure_id"])
            if status != 200:
                raise WebhookError(answer["error"], status)
            return answer, 200
        return await self._hook_call(request, h)

