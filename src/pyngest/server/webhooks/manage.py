"""The webhooks of a server: creating, changing and deleting them, and finding one by its key
on the Event API's path (a copy in memory, read again from the store every few seconds so that
the processes of a cluster see each other's changes)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from typing import Any

import orjson

from pyngest.server.service import Service
from pyngest.server.store.base import KeyTaken, StoreUnavailable, WebhookFailure, WebhookRecord
from pyngest.server.webhooks.intake import Intake, Request
from pyngest.server.webhooks.sandbox import Sandbox, TransformError, canonical_header

log = logging.getLogger("pyngest.webhooks")

REFRESH_MS = 2_000
MAX_NAME = 256
MAX_TRANSFORM = 256 * 1024


class WebhookError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Webhooks:
    def __init__(self, service: Service) -> None:
        self.s = service
        self.sandbox = Sandbox(timeout_ms=service.config.webhook_timeout_ms,
                               memory_bytes=service.config.webhook_memory_bytes)
        self.intake = Intake(service, self.sandbox)
        self._by_key: dict[str, WebhookRecord] = {}
        self._loaded_ms: int | None = None
        self._refreshing: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------ the book

    async def by_key(self, key: str) -> WebhookRecord | None:
        """The webhook with this key, if any (raises StoreUnavailable only before the first read)."""
        now = self.s.clock.now_ms()
        if self._loaded_ms is None:
            self._remember(await self.s.store.list_webhooks())
        elif now - self._loaded_ms > REFRESH_MS and self._refreshing is None:
            # in the background: the Event API does not wait for it
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return self._by_key.get(key)

    async def _refresh(self) -> None:
        try:
            self._remember(await self.s.store.list_webhooks())
        except StoreUnavailable as exc:  # the copy in memory stays; the next request tries again
            log.warning("webhooks: could not read them again, the store is unavailable: %s", exc)
        finally:
            self._refreshing = None

    def _remember(self, hooks: list[WebhookRecord]) -> None:
        self._by_key = {h.key: h for h in hooks}
        self._loaded_ms = self.s.clock.now_ms()

    def owner(self, env_id: str) -> str:
        """The environment whose webhooks a request about ``env_id`` manages: a branch's are its
        parent's (the branch is picked on the URL with ``x-inngest-env``)."""
        return self.s.registry.envs.keys_env(env_id)

    async def all(self, env_id: str) -> list[WebhookRecord]:
        """The webhooks of the environment ``env_id`` selects."""
        hooks = await self.s.store.list_webhooks()
        self._remember(hooks)
        owner = self.owner(env_id)
        return [h for h in hooks if h.env_id == owner]

    async def get(self, env_id: str, hook_id: str) -> WebhookRecord:
        """A webhook of that environment; another environment's is not found, as if not there."""
        hook = next((h for h in await self.all(env_id) if h.id == hook_id), None)
        if hook is None:
            raise WebhookError(f"no webhook with id {hook_id!r}", 404)
        return hook

    # ------------------------------------------------------------------------ changes

    async def create(self, env_id: str, body: dict[str, Any]) -> WebhookRecord:
        name = _name(body.get("name"))
        transform = await self._transform(body.get("transform"))
        now = self.s.clock.now_ms()
        hook = WebhookRecord(str(uuid.uuid4()), secrets.token_hex(32), name, transform, now, now,
                             self.owner(env_id))
        await self._save(hook)
        return hook

    async def update(self, env_id: str, hook_id: str, body: dict[str, Any]) -> WebhookRecord:
        hook = await self.get(env_id, hook_id)
        if "name" in body:
            hook.name = _name(body["name"])
        if "transform" in body:
            hook.transform = await self._transform(body["transform"])
        hook.updated_ms = self.s.clock.now_ms()
        await self._save(hook)
        return hook

    async def delete(self, env_id: str, hook_id: str) -> WebhookRecord:
        hook = await self.get(env_id, hook_id)
        await self.s.store.delete_webhook(hook.id)
        self._by_key.pop(hook.key, None)
        return hook

    async def _save(self, hook: WebhookRecord) -> None:
        try:
            await self.s.store.save_webhook(hook)
        except KeyTaken as exc:  # 256 random bits: never, but never silently either
            raise WebhookError("the webhook's key is taken; try again", 409) from exc
        self._by_key = {k: h for k, h in self._by_key.items() if h.id != hook.id}
        self._by_key[hook.key] = hook

    async def _transform(self, value: Any) -> str | None:
        """A transform to store: checked to compile and to define ``transform``; empty or null
        means the default transform."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise WebhookError("'transform' must be a string of JavaScript defining "
                               "function transform(evt, headers, queryParams, raw), or null")
        if len(value) > MAX_TRANSFORM:
            raise WebhookError(f"'transform' is {len(value)} characters long; the limit is {MAX_TRANSFORM}")
        try:
            await self.sandbox.check(value)
        except TransformError as exc:
            raise WebhookError(f"'transform' cannot be used: {exc}") from exc
        return value

    # ------------------------------------------------------------------ failed requests

    async def failures(self, hook: WebhookRecord, before: str | None, limit: int) -> list[WebhookFailure]:
        """A webhook's kept requests (found with ``get``, so of the caller's environment)."""
        return await self.s.store.webhook_failures(hook.id, before, max(1, min(limit, 100)))

    async def replay(self, env_id: str, failure_id: str) -> tuple[int, dict[str, Any]]:
        failure = await self.s.store.get_webhook_failure(failure_id)
        missing = WebhookError(f"no failed webhook request with id {failure_id!r}", 404)
        if failure is None:
            raise missing
        try:
            hook = await self.get(env_id, failure.webhook_id)
        except WebhookError as exc:  # another environment's webhook: not there, for this caller
            raise missing from exc
        return await self.intake.replay(hook, failure)

    # ------------------------------------------------------------------------ testing

    async def test(self, body: dict[str, Any]) -> dict[str, Any]:
        """What a transform makes of a sample request, stored nowhere."""
        transform = body.get("transform")
        if transform is not None and not isinstance(transform, str):
            raise WebhookError("'transform' must be a string of JavaScript, or null for the default")
        payload = body.get("payload", "")
        raw = payload if isinstance(payload, str) else _dumps(payload)
        limit = self.s.config.event_request_limit
        if len(raw.encode()) > limit:
            raise WebhookError(f"'payload' is over the size limit of {limit} bytes that requests to a webhook have")
        headers = body.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise WebhookError("'headers' must be an object of strings")
        query = body.get("query") or ""
        if not isinstance(query, str):
            raise WebhookError("'query' must be a query string (a=1&b=2)")
        req = Request(raw.encode(), {canonical_header(k): v for k, v in headers.items()}, query.lstrip("?"))
        try:
            events = await self.intake.events(transform or None, req, self.s.clock.now_ms())
        except TransformError as exc:
            return {"events": [], "error": str(exc)}
        return {"events": events, "error": None}


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WebhookError("'name' must be a non-empty string")
    if len(value) > MAX_NAME:
        raise WebhookError(f"'name' is {len(value)} characters long; the limit is {MAX_NAME}")
    return value.strip()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def webhooks_of(service: Service) -> Webhooks:
    """The service's one Webhooks (kept across the HTTP layer's app instances)."""
    hooks = service.api_state.get("webhooks")
    if hooks is None:
        hooks = service.api_state["webhooks"] = Webhooks(service)
    assert isinstance(hooks, Webhooks)
    return hooks
