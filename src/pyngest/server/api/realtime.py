"""Realtime routes (PROTOCOL.md §13): publish, subscription tokens, WebSocket and SSE subscriptions.

- ``POST /v1/realtime/publish?channel=<c>&topic=<t>[&run_id=][&metadata=]``: the body (JSON, or
  any text, sent as a string) goes to the topic's subscribers; ``content-type: text/stream``
  streams the body as ``datastream-start``, ``chunk``s and ``datastream-end``. Authorized by the
  signing key (as every SDK call) or a token with ``publish: true``; open in dev without a key.
- ``POST /v1/realtime/token``: body ``[{"channel", "name", "kind": "run"}]`` → 201
  ``{"jwt": ...}`` (signing-key auth, like publish).
- ``GET /v1/realtime/connect`` (WebSocket) and ``GET /v1/realtime/sse`` (server-sent events),
  each with ``?token=<jwt>`` or ``Authorization: Bearer <jwt>``: a valid, unexpired token is
  always required, in dev too. Frames are JSON messages (``frames.py``); a WebSocket client may
  send ``{"kind": "sub", "data": "<jwt>"}`` to add a token's topics and ``{"kind": "unsub",
  "data": [topics]}`` to drop some.

In ``pyngest start`` all of it is per environment (docs/realtime.md#environments): a token is
issued for, and signed with the key of, the asking key's environment (a branch with
``x-inngest-env``); a publish goes to the key's environment, or the run's; a topic is (environment,
channel, name), so the same names in two environments never meet.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pyngest.protocol.ids import is_ulid, new_ulid
from pyngest.server.api.common import bearer_ok, json_response, public_error, unauthorized
from pyngest.server.api.envs import reaches, request_env
from pyngest.server.environments import EnvError
from pyngest.server.realtime import frames
from pyngest.server.realtime.hub import (
    CLOSE_TOO_SLOW,
    MAX_MESSAGE_BYTES,
    MAX_NAME_CHARS,
    MAX_TOPICS,
    HubFull,
    Subscriber,
    SubscriberClosed,
    TopicKey,
)
from pyngest.server.realtime.tokens import (
    DEV_ACCOUNT_ID,
    DEV_ENV_ID,
    Claims,
    InvalidToken,
    Topic,
    claimed_env,
    issue,
    secrets_for,
    verify,
)
from pyngest.server.service import Service
from pyngest.server.store.base import StoreUnavailable

log = logging.getLogger("pyngest.realtime")

KEEPALIVE_S = 15.0  # an SSE comment this often when nothing else is sent (upstream's interval)
SSE_MAX_S = 15 * 60.0  # an SSE response ends after this long (upstream); the client reconnects
STREAM_CHUNK_BYTES = 1024  # a streamed publish is relayed in pieces of this size
RELAY_WAIT_S = 5.0  # a new subscription waits this long at most for the cross-process relay
RUN_ENVS_KEPT = 4096  # runs whose environment a process remembers for their publishes
_SSE_HEADERS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Type",
                "Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def _bad_name(kind: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"a {kind} name is required (a non-empty string)"
    if len(value) > MAX_NAME_CHARS:
        return f"the {kind} name is longer than {MAX_NAME_CHARS} characters"
    if any(ord(c) < 32 for c in value):
        return f"the {kind} name contains control characters"
    return None


class RealtimeAPI:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.config = service.config
        self.hub = service.realtime.hub
        self.secrets = service.realtime.secrets
        # upstream's dev-server account; in dev, its one environment too
        self.account_id = DEV_ACCOUNT_ID
        self._run_envs: OrderedDict[str, str] = OrderedDict()

    def _now_s(self) -> int:
        return self.service.clock.now_ms() // 1000

    @property
    def _per_env(self) -> bool:
        return self.config.mode != "dev"  # upstream's dev server is one environment

    def _secrets(self, env_id: str) -> list[bytes]:
        """What a token of ``env_id`` is signed with (the first: the environment's active key; a
        branch's is its parent's) and checked against (every key the environment accepts)."""
        if not self._per_env:
            return self.secrets
        envs = self.service.registry.envs
        active = envs.signing_key(env_id)
        keys = ([active] if active else []) + [k for k in envs.accepted_signing_keys(env_id) if k != active]
        return secrets_for(keys) if keys else self.secrets

    def _claims(self, token: str) -> Claims:
        """A verified token. Its signature is checked with the keys of the environment it names
        only, so that a key of one environment cannot make another's tokens."""
        if not self._per_env:
            return verify(self.secrets, token, self._now_s())
        env_id = claimed_env(token)
        if self.service.registry.envs.get(env_id) is None:
            raise InvalidToken("invalid realtime token: it names no environment of this server (env)")
        return verify(self._secrets(env_id), token, self._now_s())

    @staticmethod
    def _token_of(query: Any, headers: Any) -> str:
        token = query.get("token") or ""
        if not token:
            scheme, _, value = headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
        return str(token)

    # ---------------------------------------------------------------------------- tokens

    async def token(self, request: Request) -> Response:
        if not bearer_ok(request, self.config):
            return unauthorized()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, list) or not body:
            return public_error('Invalid request: must provide a list of topics, e.g. '
                                '[{"channel": "user:123", "name": "ai", "kind": "run"}]', 400)
        if len(body) > MAX_TOPICS:
            return public_error(f"Invalid request: at most {MAX_TOPICS} topics per token", 400)
        try:
            # the key's environment, or with x-inngest-env a branch of it (created on first use,
            # as a subscriber may come before the branch's first sync or event)
            env_id = await request_env(request, self.service, create=True)
        except EnvError as exc:
            return public_error(exc.message, exc.status)
        topics: list[Topic] = []
        for i, raw in enumerate(body):
            if not isinstance(raw, dict):
                return public_error(f"Invalid request: topic {i} is not an object with channel and name", 400)
            problem = _bad_name("channel", raw.get("channel")) or _bad_name("topic", raw.get("name"))
            if problem:
                return public_error(f"Invalid request: topic {i}: {problem}", 400)
            kind = raw.get("kind") or "run"
            if kind != "run":
                return public_error(f"Invalid request: topic {i}: kind {kind!r} is not supported (use \"run\")", 400)
            topics.append(Topic(channel=raw["channel"], name=raw["name"], env_id=env_id))
        jwt = issue(self._secrets(env_id)[0], account_id=self.account_id, env_id=env_id, topics=topics,
                    now_s=self._now_s())
        return json_response({"jwt": jwt}, 201)

    # ---------------------------------------------------------------------------- publish

    async def _publish_env(self, request: Request, run_id: str | None) -> str | Response:
        """The environment a publish goes to, or the refusal: a token that may publish, its own;
        a signing key, its environment (a branch with x-inngest-env) — and a publish from a run
        (``run_id``), the run's, when the key reaches it."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.count(".") == 2:
            try:
                claims = self._claims(value.strip())
            except InvalidToken:
                pass
            else:
                if claims.publish:
                    return claims.env_id or DEV_ENV_ID
        if not bearer_ok(request, self.config):
            return unauthorized()
        try:
            env_id = await request_env(request, self.service)
        except EnvError as exc:
            return public_error(exc.message, exc.status)
        if run_id is None or not self._per_env:
            return env_id
        run_env = await self._run_env(run_id)
        return run_env if run_env is not None and reaches(request, self.service)(run_env) else env_id

    async def _run_env(self, run_id: str) -> str | None:
        """A run's environment (remembered: a run publishing a stream of messages is looked up once)."""
        known = self._run_envs.get(run_id)
        if known is not None:
            self._run_envs.move_to_end(run_id)
            return known
        try:
            run = await self.service.state.runs.get(run_id)
        except StoreUnavailable:
            return None
        if run is None:
            return None
        self._run_envs[run_id] = run.env_id
        if len(self._run_envs) > RUN_ENVS_KEPT:
            self._run_envs.popitem(last=False)
        return run.env_id

    async def publish(self, request: Request) -> Response:
        query = request.query_params
        run_id = query.get("run_id") or None
        if run_id is not None and not is_ulid(run_id):
            run_id = None  # upstream ignores a run id it cannot parse
        env_id = await self._publish_env(request, run_id)
        if isinstance(env_id, Response):
            return env_id
        channel = query.get("channel")
        topics = list(dict.fromkeys(query.getlist("topic")))
        problem = _bad_name("channel", channel) or (None if topics else "a topic name is required (?topic=)")
        problem = problem or next((p for p in (_bad_name("topic", t) for t in topics) if p), None)
        if problem:
            return public_error(f"Invalid publish: {problem}", 400)
        assert channel is not None
        metadata: Any = None
        if query.get("metadata"):
            try:
                metadata = orjson.loads(query["metadata"])
            except orjson.JSONDecodeError:
                return public_error("Invalid publish: metadata is not JSON", 400)
        if request.headers.get("content-type", "").split(";")[0].strip() == "text/stream":
            return await self._publish_stream(request, env_id, channel, topics, run_id, metadata)
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > MAX_MESSAGE_BYTES:
                return public_error(f"the message is larger than the realtime limit of {MAX_MESSAGE_BYTES} bytes "
                                    "(send less, or stream it with content-type text/stream)", 413)
        try:
            data: Any = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            data = body.decode("utf-8", "replace")  # not JSON: sent as a string, as upstream does
        now = self.service.clock.now_ms()
        for topic in topics:
            frame = frames.message("data", env_id=env_id, channel=channel, topic=topic, data=data, now_ms=now,
                                   run_id=run_id, metadata=metadata)
            await self.hub.publish((env_id, channel, topic), frame)
        return Response(status_code=200)

    async def _publish_stream(self, request: Request, env_id: str, channel: str, topics: list[str],
                              run_id: str | None, metadata: Any) -> Response:
        stream_id = new_ulid()
        keys = [(env_id, channel, t) for t in topics]

        async def each(kind: str) -> None:
            now = self.service.clock.now_ms()
            for key in keys:
                await self.hub.publish(key, frames.message(kind, env_id=env_id, channel=channel, topic=key[2],
                                                           data=stream_id, now_ms=now, run_id=run_id,
                                                           metadata=metadata))

        await each("datastream-start")
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # pieces may split a character
        pending = b""
        try:
            async for piece in request.stream():
                pending += piece
                while len(pending) >= STREAM_CHUNK_BYTES:
                    await self._chunk(keys, stream_id, decoder.decode(pending[:STREAM_CHUNK_BYTES]), run_id)
                    pending = pending[STREAM_CHUNK_BYTES:]
            text = decoder.decode(pending, final=True)
            if text:
                await self._chunk(keys, stream_id, text, run_id)
        finally:
            await each("datastream-end")
        return Response(status_code=200)

    async def _chunk(self, keys: list[TopicKey], stream_id: str, text: str, run_id: str | None) -> None:
        if not text:
            return
        for key in keys:
            await self.hub.publish(key, frames.chunk(stream_id=stream_id, data=text, channel=key[1], topic=key[2],
                                                     run_id=run_id))

    # ---------------------------------------------------------------------------- subscribe

    def _topics(self, claims: Claims) -> list[TopicKey]:
        # the token's environment: the same channel and topic in another environment is another topic
        return [(claims.env_id or t.env_id, t.channel, t.name) for t in claims.topics]

    async def _subscribe(self, protocol: str, claims: Claims) -> Subscriber:
        relay = self.service.realtime.relay
        if relay is not None and not relay.connected.is_set():
            # scale-out: be subscribed everywhere before saying so
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(relay.connected.wait(), RELAY_WAIT_S)
        return self.hub.subscribe(protocol, self._topics(claims))

    def _check(self, token: str) -> Claims | tuple[int, str]:
        if not token:
            return 401, "Not authenticated: a realtime subscription needs a token (?token=<jwt> from POST /v1/realtime/token)"
        try:
            claims = self._claims(token)
        except InvalidToken as exc:
            return 401, f"Not authenticated: {exc}"
        if not claims.topics:
            return 400, "the token grants no topics to subscribe to"
        if len(claims.topics) > MAX_TOPICS:
            return 400, f"the token names more than {MAX_TOPICS} topics"
        return claims

    async def sse(self, request: Request) -> Response:
        checked = self._check(self._token_of(request.query_params, request.headers))
        if isinstance(checked, tuple):
            return public_error(checked[1], checked[0])
        try:
            sub = await self._subscribe("sse", checked)
        except HubFull as exc:
            return public_error(f"realtime subscriptions are full: {exc}; try again later", 503)
        return StreamingResponse(self._sse_frames(sub), media_type="text/event-stream", headers=_SSE_HEADERS)

    async def _sse_frames(self, sub: Subscriber) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + SSE_MAX_S
        try:
            yield b":\n\n"  # headers and a first byte out now: the client knows it is subscribed
            while time.monotonic() < deadline:
                try:
                    frame = await sub.next(min(KEEPALIVE_S, max(0.0, deadline - time.monotonic())))
                except SubscriberClosed as closed:
                    if closed.code == CLOSE_TOO_SLOW:  # (stopping: the closing message was the last)
                        yield b"event: error\ndata: " + orjson.dumps({"code": closed.code, "reason": closed.reason}) + b"\n\n"
                    return
                yield b":\n\n" if frame is None else b"data: " + frame + b"\n\n"
        finally:
            self.hub.unsubscribe(sub)

    async def connect(self, ws: WebSocket) -> None:
        checked = self._check(self._token_of(ws.query_params, ws.headers))
        if isinstance(checked, tuple):
            await _deny(ws, *checked)
            return
        try:
            sub = await self._subscribe("ws", checked)
        except HubFull as exc:
            await _deny(ws, 503, f"realtime subscriptions are full: {exc}; try again later")
            return
        try:
            await ws.accept()
        except Exception:
            self.hub.unsubscribe(sub)
            raise
        reader = asyncio.create_task(self._read(ws, sub))
        writer = asyncio.create_task(self._write(ws, sub))
        sub.on_drop = writer.cancel  # dropped while a send waits on a client that stopped reading
        try:
            await asyncio.wait({writer})
            closed = sub.closed
            if closed is not None and closed.code != 1000 and ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close(closed.code, closed.reason[:120])
        finally:
            for task in (reader, writer):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, writer, return_exceptions=True)
            self.hub.unsubscribe(sub)

    @staticmethod
    async def _write(ws: WebSocket, sub: Subscriber) -> None:
        """Frames to the socket, in order, until the subscription ends (SubscriberClosed) or the
        client goes."""
        with contextlib.suppress(SubscriberClosed, WebSocketDisconnect, RuntimeError, OSError):
            while True:
                frame = await sub.next(None)
                if frame is not None:
                    await ws.send_text(frame.decode())

    async def _read(self, ws: WebSocket, sub: Subscriber) -> None:
        """The client's messages: ``sub`` adds a token's topics, ``unsub`` removes topics;
        a disconnect ends the subscription."""
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    continue  # binary frames carry nothing here
                try:
                    msg = orjson.loads(text)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if msg.get("kind") == "sub" and isinstance(msg.get("data"), str):
                    try:
                        claims = self._claims(msg["data"])
                    except InvalidToken as exc:
                        log.info("realtime: a subscribe message with an unusable token: %s", exc)
                        continue
                    if len(sub.topics) + len(claims.topics) <= MAX_TOPICS:
                        self.hub.add_topics(sub, self._topics(claims))
                elif msg.get("kind") == "unsub" and isinstance(msg.get("data"), list):
                    # a topic without env_id: that channel and topic in each environment subscribed
                    envs = {key[0] for key in sub.topics}
                    keys = [(env, str(t.get("channel")), str(t.get("name")))
                            for t in msg["data"] if isinstance(t, dict)
                            for env in ([str(t["env_id"])] if t.get("env_id") else envs)]
                    self.hub.remove_topics(sub, keys)
        finally:
            sub.close(1000, "client closed")


async def _deny(ws: WebSocket, status: int, message: str) -> None:
    """Refuse the upgrade with an HTTP answer (upstream's publicerr shape) where the server can
    send one, else close before accepting (the client sees 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(public_error(message, status))
    else:
        await ws.close(1008, message[:120])
