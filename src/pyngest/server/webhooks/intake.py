"""What a webhook does with a request: the transform, then the Event API's own validation and
intake; a request that gives no events is kept (a *failure*) for inspection and replay."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import orjson
from starlette.types import Scope

from pyngest.protocol import headers as H
from pyngest.protocol.events import EventValidationError, normalize_incoming
from pyngest.protocol.ids import new_ulid
from pyngest.server.environments import EnvError
from pyngest.server.events import UNAVAILABLE, stored, take_events
from pyngest.server.model import DEFAULT_ENV, StoredEvent
from pyngest.server.service import Service
from pyngest.server.store.base import StoreUnavailable, WebhookFailure, WebhookRecord
from pyngest.server.webhooks.sandbox import (
    DEFAULT_EVENT_NAME,
    Sandbox,
    TransformError,
    canonical_header,
)

log = logging.getLogger("pyngest.webhooks")

# failed requests kept per webhook (the oldest go first); retention removes older ones anyway
FAILURES_KEPT = 100

FORM = "application/x-www-form-urlencoded"
# upstream's answer for an archived branch environment (and an unknown key)
NOT_FOUND = "Event key not found"


@dataclass(slots=True)
class Request:
    """A webhook request as it arrived (and as a failure keeps it)."""

    body: bytes
    headers: dict[str, str]  # canonical names (X-Github-Event); repeated headers joined with ", "
    query: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def branch(self) -> str | None:
        """``x-inngest-env``: a header, or a query parameter as in upstream's webhook URLs."""
        name = self.headers.get(canonical_header(H.ENV))
        if not name:
            values = parse_qs(self.query).get(H.ENV)
            name = values[0] if values else None
        return name or None


class EnvRefused(Exception):
    """The request's environment does not take events (an archived branch, a bad name)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def webhook_request(body: bytes, scope: Scope) -> Request:
    """The request a webhook got, from its ASGI scope."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = canonical_header(name.decode("latin-1"))
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return Request(body, headers, scope.get("query_string", b"").decode("latin-1"))


class Intake:
    def __init__(self, service: Service, sandbox: Sandbox) -> None:
        self.s = service
        self.sandbox = sandbox

    async def events(self, transform: str | None, req: Request, now_ms: int) -> list[dict[str, Any]]:
        """The events the transform makes of the request, validated as the Event API validates
        (normalized, not stored yet). Raises TransformError."""
        evt, parse = _body(req)
        if transform is None:
            result: Any = {"name": DEFAULT_EVENT_NAME, "data": evt}
        else:
            query = parse_qs(req.query, keep_blank_values=True)
            result = await self.sandbox.run(transform, raw=req.body.decode("utf-8", "replace"), evt=evt,
                                            parse=parse, headers=req.headers, query=query)
        items = result if isinstance(result, list) else [result]
        if not isinstance(result, (dict, list)):
            raise TransformError(f"the transform returned {_kind(result)}: it must return an event "
                                 "({name, data}) or an array of events")
        out: list[dict[str, Any]] = []
        for index, item in enumerate(items, start=1):
            label = "" if len(items) == 1 else f"event {index}: "
            try:
                out.append(normalize_incoming(item, now_ms))
            except EventValidationError as exc:
                raise TransformError(f"the transform's {label}is not a valid event: {exc}") from exc
        return out

    async def target(self, hook: WebhookRecord, req: Request) -> str:
        """The environment the request's events go to: the webhook's, or with ``x-inngest-env``
        that branch of it, created on first use as the Event API creates branches. Raises
        EnvRefused for an archived branch (upstream's "Event key not found")."""
        if self.s.config.mode == "dev":
            return DEFAULT_ENV  # upstream's dev server is one environment
        envs = self.s.registry.envs
        if envs.get(hook.env_id) is None:
            raise EnvRefused(401, NOT_FOUND)
        name = req.branch
        env = envs.select(hook.env_id, name)
        if env is None and name:
            try:
                env = await envs.branch(hook.env_id, name)
            except EnvError as exc:
                raise EnvRefused(400, f"x-inngest-env: {exc.message}") from exc
        if env is None or env.archived_ms is not None:
            raise EnvRefused(401, NOT_FOUND)
        return env.id

    async def deliver(self, hook: WebhookRecord, req: Request) -> tuple[int, dict[str, Any]]:
        """Handle ``POST /e/{key}`` for a webhook: (HTTP status, answer)."""
        now = self.s.clock.now_ms()
        try:
            env_id = await self.target(hook, req)
        except EnvRefused as exc:  # as the Event API answers it: nothing kept
            return exc.status, {"status": exc.status, "message": "", "error": exc.error}
        try:
            try:
                ids = await self._store_events(hook, req, now, env_id)
            except TransformError as exc:
                failure = WebhookFailure(new_ulid(now), hook.id, now, str(exc), req.body, req.headers, req.query)
                await self.s.store.add_webhook_failure(failure, FAILURES_KEPT)
                log.info("webhook %s (%s): request refused and kept as %s: %s", hook.name, hook.id, failure.id, exc)
                return 400, {"ids": [], "status": 400, "error": f"webhook {hook.name!r}: {exc}",
                             "failure_id": failure.id}
        except StoreUnavailable as exc:
            return 503, {"ids": [], "status": 503, "error": UNAVAILABLE.format(exc=exc)}
        return 200, {"ids": ids, "status": 200}

    async def replay(self, hook: WebhookRecord, failure: WebhookFailure) -> tuple[int, dict[str, Any]]:
        """Run the webhook's current transform on a kept request again."""
        now = self.s.clock.now_ms()
        req = Request(failure.body, failure.headers, failure.query)
        try:
            env_id = await self.target(hook, req)
        except EnvRefused as exc:
            error = (f"the branch environment {req.branch!r} is archived: unarchive it to replay this request"
                     if exc.status == 401 else exc.error)
            return 400, {"ids": [], "status": 400, "error": error, "failure_id": failure.id}
        try:
            ids = await self._store_events(hook, req, now, env_id)
        except TransformError as exc:
            failure.error = str(exc)
            await self.s.store.update_webhook_failure(failure)
            return 400, {"ids": [], "status": 400, "error": f"webhook {hook.name!r}: {exc}", "failure_id": failure.id}
        failure.replayed_ms, failure.event_ids = now, ids
        await self.s.store.update_webhook_failure(failure)
        return 200, {"ids": ids, "status": 200, "failure_id": failure.id}

    async def _store_events(self, hook: WebhookRecord, req: Request, now: int, env_id: str) -> list[str]:
        events = await self.events(hook.transform, req, now)
        source = hashlib.sha256(hook.key.encode()).hexdigest()[:12]

        def finish(index: int, event: dict[str, Any]) -> StoredEvent:
            return stored(event, received_ms=now, source=source, env_id=env_id)

        # all or nothing: a request is stored whole or kept whole as a failure, so that a replay
        # never repeats part of it
        accepted, error = await take_events(events, now_ms=now, max_bytes=self.s.config.max_event_bytes,
                                            body_size=None, finish=finish)
        if error is not None:
            raise TransformError(f"the transform's events are not valid: {error}")
        if accepted:
            await self.s.runner.accept(accepted)
        return [e.internal_id for e in accepted]


def _body(req: Request) -> tuple[Any, bool]:
    """The request body as the transform's ``evt``, and whether the isolate should parse ``raw``
    (JSON bodies: parsed once here to refuse what is not JSON with a clear message)."""
    if not req.body.strip():
        return {}, False
    if req.content_type.startswith(FORM):
        return dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)), False
    try:
        evt = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise TransformError(f"the request body is not JSON ({exc}): send JSON, or form fields with "
                             f"Content-Type: {FORM}") from exc
    return evt, True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(type(value), "a value")
