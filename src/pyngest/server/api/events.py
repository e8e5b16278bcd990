"""The Event API: ``POST /e/{key}`` and ``POST /invoke/{slug}`` (PROTOCOL.md §1)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from pyngest.protocol import headers as H
from pyngest.protocol.events import (
    FN_INVOKED,
    INTERNAL_DATA_KEY,
    EventValidationError,
    check_depth,
)
from pyngest.protocol.ids import new_ulid, seeded_ulid
from pyngest.server.api.common import bearer_ok, json_response, public_error, unauthorized
from pyngest.server.api.envs import request_env
from pyngest.server.api.limits import (
    BodyTooLarge,
    announced_length,
    asgi_chunks,
    read_limited,
    request_body,
)
from pyngest.server.environments import EnvError, refuses_event, refuses_ip
from pyngest.server.events import UNAVAILABLE, stored, take_events
from pyngest.server.model import DEFAULT_ENV, StoredEvent
from pyngest.server.service import Service
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.webhooks.intake import webhook_request
from pyngest.server.webhooks.manage import webhooks_of

log = logging.getLogger("pyngest.api")

NOT_EVENTS = "Request body must contain an event object or an array of event objects"
_NOT_FOUND = "Event key not found"


def _env_name(scope: Scope) -> str | None:
    """``x-inngest-env``, a header or (as in webhook URLs) a query parameter."""
    for name, value in scope["headers"]:
        if name == b"x-inngest-env" and value:
            return str(value.decode("utf-8", "replace"))
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get(H.ENV)
    return values[0] if values else None


def _client(scope: Scope, trust_proxy: bool) -> str:
    """The sender's address (with --trust-proxy: the last one X-Forwarded-For names)."""
    if trust_proxy:
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                last = str(value.decode("latin-1")).rsplit(",", 1)[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return str(client[0]) if client else ""


class EventAPI:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.config = service.config
        self.webhooks = webhooks_of(service)

    async def _key_env(self, key: str, scope: Scope) -> tuple[int, dict[str, Any]] | tuple[str, dict[str, Any] | None]:
        """The environment an event key sends to (and its filter), or the refusal (status, body)."""
        if not self.config.requires_auth:
            return DEFAULT_ENV, None  # dev: any key works, and there is one environment
        envs = self.service.registry.envs
        rec = envs.event_key(key)
        if rec is None:
            if not envs.event_keys:
                return 503, {"status": 503, "message": "",
                             "error": "Event keys are required to process events securely: start the server with "
                                      "--event-key, or create one in the dashboard (Manage → Event keys)"}
            return 401, {"status": 401, "message": "", "error": _NOT_FOUND}
        refusal = refuses_ip(rec.filter, _client(scope, self.config.trust_proxy))
        if refusal is not None:
            return 403, {"status": 403, "message": "", "error": f"Event refused: {refusal.message}"}
        name = _env_name(scope)
        env = envs.select(rec.env_id, name)
        if env is None and name:
            try:
                env = await envs.branch(rec.env_id, name)
            except EnvError as exc:
                return 400, {"status": 400, "message": "", "error": f"x-inngest-env: {exc.message}"}
        if env is None or envs.is_archived(env):
            # as upstream: an archived (branch) environment answers as if the key were unknown
            return 401, {"status": 401, "message": "", "error": _NOT_FOUND}
        return env.id, rec.filter

    async def receive(self, request: Request) -> Response:
        unread = _Body(request.stream(), request.scope["headers"])
        status, payload = await self.handle(
            request.path_params.get("key", ""), unread,
            request.headers.get("content-type", ""), request.headers.get(H.EVENT_ID_SEED), request.scope,
        )
        return json_response(payload, status, None if unread.complete else {"connection": "close"})

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /e/{key}`` without the framework's layers: it is the hottest route."""
        content_type, seed = "", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"x-inngest-event-id-seed":
                seed = value.decode("latin-1")
        unread = _Body(asgi_chunks(receive), scope["headers"])
        status, payload = await self.handle(scope["path"][3:], unread, content_type, seed, scope)
        body = orjson.dumps(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if not unread.complete:
            # refused with the body (or the rest of it) unread: the connection ends with the answer
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def handle(self, key: str, unread: _Body, content_type: str,
                     seed: str | None, scope: Scope) -> tuple[int, dict[str, Any]]:
        """Check the key, read the body within the size limit, then validate, store and
        acknowledge its events. Returns (HTTP status, response body).

        A webhook's key is an event key of its own: its requests go through its transform into
        the webhook's environment (or, with ``x-inngest-env``, a branch of it)."""
        try:
            hook = await self.webhooks.by_key(key)
        except StoreUnavailable as exc:
            return 503, {"ids": [], "status": 503, "error": UNAVAILABLE.format(exc=exc)}
        env_id, key_filter = DEFAULT_ENV, None
        if hook is None:
            keyed = await self._key_env(key, scope)
            if isinstance(keyed[0], int):
                return keyed[0], keyed[1] or {}
            env_id, key_filter = keyed[0], keyed[1]
        try:
            body = await unread.read(self.config.event_request_limit)
        except BodyTooLarge as exc:
            return 413, {"ids": [], "status": 413, "error": f"{exc}: no event was stored"}
        if hook is not None:
            return await self.webhooks.intake.deliver(hook, webhook_request(body, scope))
        try:
            items = _parse_events(body, content_type)
        except ValueError as exc:
            return 400, {"ids": [], "status": 400, "error": str(exc)}
        now = self.service.clock.now_ms()
        source = hashlib.sha256(key.encode()).hexdigest()[:12] if key else ""

        def finish(index: int, event: dict[str, Any]) -> StoredEvent:
            iid = seeded_ulid(seed, index) or new_ulid(now)
            return stored(event, received_ms=now, internal_id=iid, source=source, env_id=env_id)

        # As upstream: events are taken in order up to the first invalid one, which ends the
        # request (so does a 5,001st event). The events before it are stored; the answer (400)
        # has their ids only.
        accepted, error = await take_events(items, now_ms=now, max_bytes=self.config.max_event_bytes,
                                            body_size=len(body), finish=finish)
        for ev in accepted:
            if (refusal := refuses_event(key_filter, ev.name)) is not None:
                return 403, {"ids": [], "status": 403, "error": f"Event refused: {refusal.message}; no event was stored"}
        ids = [e.internal_id for e in accepted]
        if accepted:
            try:
                await self.service.runner.accept(accepted)
            except StoreUnavailable as exc:
                log.warning("POST /e: %d events refused, the store is unavailable: %s", len(accepted), exc)
                return 503, {"ids": [], "status": 503, "error": UNAVAILABLE.format(exc=exc)}
        if error is not None:
            return 400, {"ids": ids, "status": 400, "error": error}
        return 200, {"ids": ids, "status": 200}

    async def invoke(self, request: Request) -> Response:
        if self.config.requires_auth and not bearer_ok(request, self.config):
            return unauthorized()
        slug = unquote(request.path_params.get("slug", ""))
        if not slug:
            return public_error("Function slug is required", 400)
        try:
            env_id = await request_env(request, self.service)
        except EnvError as exc:
            return public_error(exc.message, exc.status)
        if self.service.registry.find_function(slug, env_id) is None:
            return public_error(f"could not find function with ID: {slug}", 404)
        body = await request_body(request, self.config.event_request_limit)
        try:
            raw = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            return public_error(f"Unable to read post data request: {exc}", 400)
        if not isinstance(raw, dict):
            return public_error("Unable to read post data request: the body must be a JSON object", 400)
        now = self.service.clock.now_ms()
        given = raw.get("data")
        data: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        data[INTERNAL_DATA_KEY] = {"fn_id": slug, "correlation_id": "", "expire": 0, "gid": "", "name": "",
                                   "source_app_id": "", "source_fn_id": "", "source_fn_v": 0}
        event: dict[str, Any] = {"name": FN_INVOKED, "data": data, "user": raw.get("user") or {},
                                 "ts": raw.get("ts") or now}
        if raw.get("id"):
            event["id"] = str(raw["id"])
        try:
            check_depth(event)
        except EventValidationError as exc:
            return public_error(f"Unable to read post data request: {exc}", 400)
        if len(body) > self.config.max_event_bytes:
            return public_error(f"Event is over the max size: Max {self.config.max_event_bytes} bytes / "
                                f"Size {len(body)} bytes", 400)
        iid = seeded_ulid(request.headers.get(H.EVENT_ID_SEED), 0) or new_ulid(now)
        await self.service.runner.accept([stored(event, received_ms=now, internal_id=iid, env_id=env_id)])
        return json_response({"id": iid, "status": 200})


class _Body:
    """A request body not read yet: read only once the key is known to be good."""

    def __init__(self, chunks: AsyncIterator[bytes], headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.chunks = chunks
        self.announced = announced_length(headers)
        self.complete = False

    async def read(self, limit: int) -> bytes:
        body = await read_limited(self.chunks, self.announced, limit)
        self.complete = True
        return body


def _parse_events(body: bytes, content_type: str) -> list[Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if content_type.startswith("application/x-www-form-urlencoded"):
            fields = dict(parse_qsl(body.decode("utf-8", "replace")))
            return [_form_event(fields)]
        raise ValueError(f"{NOT_EVENTS} (the body is not valid JSON: {exc})") from exc
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list):
        return parsed
    raise ValueError(NOT_EVENTS)


def _form_event(fields: dict[str, str]) -> dict[str, Any]:
    name = fields.pop("name", "")
    return {"name": name, "data": fields}
