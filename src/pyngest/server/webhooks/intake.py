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

from pyngest.protocol.events import EventValidationError, normalize_incoming
from pyngest.protocol.ids import new_ulid
from pyngest.server.events import UNAVAILABLE, stored, take_events
from pyngest.server.model import StoredEvent
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


@dataclass(slots=True)
class Request:
    """A webhook request as it arrived (and as a failure keeps it)."""

    body: bytes
    headers: dict[str, str]  # canonical names (X-Github-Event); repeated headers joined with ", "
    query: str

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


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

    async def deliver(self, hook: WebhookRecord, req: Request) -> tuple[int, dict[str, Any]]:
        """Handle ``POST /e/{key}`` for a webhook: (HTTP status, answer)."""
        now = self.s.clock.now_ms()
        try:
            try:
                ids = await self._store_events(hook, req, now)
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
            ids = await self._store_events(hook, req, now)
        except TransformError as exc:
            failure.error = str(exc)
            await self.s.store.update_webhook_failure(failure)
            return 400, {"ids": [], "status": 400, "error": f"webhook {hook.name!r}: {exc}", "failure_id": failure.id}
        failure.replayed_ms, failure.event_ids = now, ids
        await self.s.store.update_webhook_failure(failure)
        return 200, {"ids": ids, "status": 200, "failure_id": failure.id}

    async def _store_events(self, hook: WebhookRecord, req: Request, now: int) -> list[str]:
        events = await self.events(hook.transform, req, now)
        source = hashlib.sha256(hook.key.encode()).hexdigest()[:12]

        def finish(index: int, event: dict[str, Any]) -> StoredEvent:
            return stored(event, received_ms=now, source=source)

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
