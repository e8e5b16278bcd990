"""The WebSocket gateway: one session per worker connection (PROTOCOL.md §12).

GATEWAY_HELLO → WORKER_CONNECT (the session token /v0/connect/start handed out, the apps and
their functions: synced here, into the environment the start request selected, as a PUT would
sync an HTTP app) → GATEWAY_CONNECTION_READY →
then requests, acks, lease extensions, replies and heartbeats until the connection ends.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any

import orjson
from google.protobuf.message import DecodeError
from starlette.websockets import WebSocket, WebSocketDisconnect

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.connect.hub import (
    EXTEND_LEASE_INTERVAL,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_MS,
    MISSED_HEARTBEATS,
    Session,
    Worker,
    connect_url,
    frame,
)
from pyngest.server.environments import EnvError
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.registry import RegistrationError
from pyngest.server.store.base import StoreUnavailable

if TYPE_CHECKING:
    from pyngest.server.service import Service

log = logging.getLogger("pyngest.connect")

SUBPROTOCOL = "v0.connect.inngest.com"
HANDSHAKE_TIMEOUT_S = 10.0


class HandshakeError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def serve(service: Service, ws: WebSocket) -> None:
    """Run one worker connection to its end."""
    if SUBPROTOCOL not in ws.scope.get("subprotocols", []):
        await ws.close(code=1002, reason=f"the connect gateway speaks the {SUBPROTOCOL} subprotocol only")
        return
    await ws.accept(subprotocol=SUBPROTOCOL)
    lock = asyncio.Lock()

    async def send(data: bytes) -> None:
        async with lock:
            await ws.send_bytes(data)

    async def close() -> None:
        await ws.close(code=1001, reason="the server is shutting down")

    hub = service.connect
    try:
        await send(frame(pb.GATEWAY_HELLO))
        try:
            first = await asyncio.wait_for(_receive(ws), timeout=HANDSHAKE_TIMEOUT_S)
            worker = await _handshake(service, first, send, close)
        except HandshakeError as exc:
            log.warning("connect: a worker's handshake was refused: %s", exc.message)
            await send(frame(pb.SYNC_FAILED, pb.SystemError(code=exc.code, message=exc.message)))
            await ws.close(code=4001, reason=exc.message[:120])
            return
        except TimeoutError:
            await ws.close(code=4001, reason="no WORKER_CONNECT within 10 s of GATEWAY_HELLO")
            return
        await send(frame(pb.GATEWAY_CONNECTION_READY, pb.GatewayConnectionReadyData(
            heartbeat_interval=HEARTBEAT_INTERVAL, extend_lease_interval=EXTEND_LEASE_INTERVAL)))
        hub.add(worker)
        log.info("connect: worker %s (%s, %s) connected for %s, capacity %s", worker.instance_id, worker.id,
                 worker.sdk, ", ".join(worker.apps), worker.capacity or "unlimited")
        try:
            await _session(service, ws, worker, send)
        finally:
            hub.remove(worker.id)
            log.info("connect: worker %s (%s) disconnected", worker.instance_id, worker.id)
    except (WebSocketDisconnect, ConnectionError):
        return


async def _receive(ws: WebSocket) -> pb.ConnectMessage:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if data is None:
            continue  # a text frame is not part of the protocol
        msg = pb.ConnectMessage()
        try:
            msg.ParseFromString(data)
        except DecodeError:
            log.warning("connect: a frame that is not a ConnectMessage was ignored")
            continue
        return msg


async def _handshake(service: Service, msg: pb.ConnectMessage, send: Any, close: Any) -> Worker:
    if msg.kind != pb.WORKER_CONNECT:
        raise HandshakeError("connect_worker_hello_invalid_msg",
                             f"expected WORKER_CONNECT after GATEWAY_HELLO, got {pb.GatewayMessageType.Name(msg.kind)}")
    data = pb.WorkerConnectRequestData()
    try:
        data.ParseFromString(msg.payload)
    except DecodeError as exc:
        raise HandshakeError("connect_worker_hello_invalid_payload", f"WORKER_CONNECT payload: {exc}") from exc
    hub = service.connect
    session = hub.take_session(data.connection_id)
    if session is None or not hmac.compare_digest(session.token, data.auth_data.session_token):
        raise HandshakeError("connect_authentication_failed",
                             "unknown connection id or session token: start each connection with POST /v0/connect/start")
    if not data.apps:
        raise HandshakeError("connect_worker_hello_invalid_payload", "WORKER_CONNECT names no app")
    env_id = await _environment(service, session, data)
    sdk_version = data.sdk_version if data.sdk_version.startswith("v") else f"v{data.sdk_version}"
    apps: dict[str, str] = {}
    for app in data.apps:
        apps[app.app_name] = await sync_app(service, app, data, f"{data.sdk_language}:{sdk_version}", env_id)
    now = service.clock.now_ms()
    attrs = data.system_attributes
    capacity = data.max_worker_concurrency if data.HasField("max_worker_concurrency") else None
    return Worker(
        id=data.connection_id, instance_id=data.instance_id or data.connection_id, apps=apps, send=send,
        close=close, env_id=env_id, sdk_language=data.sdk_language, sdk_version=data.sdk_version,
        platform=data.platform, capacity=capacity if capacity and capacity > 0 else None,
        cpu_cores=attrs.cpu_cores, mem_bytes=attrs.mem_bytes, os=attrs.os, connected_ms=now,
        last_heartbeat_ms=now, ready=not data.worker_manual_readiness_ack,
    )


async def _environment(service: Service, session: Session, data: pb.WorkerConnectRequestData) -> str:
    """The worker's environment: the one its start request selected (signing key, and
    ``x-inngest-env`` for a branch). The SDKs name it again in WORKER_CONNECT (``environment``);
    a worker that named it only there gets it as its start request would have, and one that
    names another environment than its start request is refused (a confused or forged client)."""
    named = data.environment if data.HasField("environment") else ""
    if service.config.mode == "dev" or not named:
        return session.env_id
    envs = service.registry.envs
    env = envs.get(session.env_id)
    if env is not None and named in (env.id, env.name):
        return session.env_id
    if session.env_named:
        raise HandshakeError("connect_worker_hello_invalid_payload",
                             f"WORKER_CONNECT names environment {named!r}, but the connection was started in "
                             f"{env.name if env is not None else session.env_id!r} (x-inngest-env of /v0/connect/start)")
    from pyngest.server.api.envs import select_env

    try:  # as x-inngest-env on the start request would have (a new branch name makes the branch)
        return await select_env(service, session.key_env, named, create=True)
    except EnvError as exc:
        raise HandshakeError("connect_worker_hello_invalid_payload", f"environment {named!r}: {exc.message}") from exc


async def sync_app(service: Service, app: pb.AppConfiguration, data: pb.WorkerConnectRequestData,
                   sdk: str, env_id: str = DEFAULT_ENV) -> str:
    """Register an app the worker announces (``deployType: connect``) in its environment; its
    app id."""
    try:
        functions = orjson.loads(app.functions) if app.functions else []
    except orjson.JSONDecodeError as exc:
        raise HandshakeError("connect_worker_hello_invalid_payload",
                             f"app {app.app_name!r}: functions are not JSON: {exc}") from exc
    if not isinstance(functions, list):
        raise HandshakeError("connect_worker_hello_invalid_payload", f"app {app.app_name!r}: functions must be a list")
    for fn in functions:
        # Requests to these functions go over the gateway: the step URL names app and function.
        if isinstance(fn, dict) and isinstance(fn.get("steps"), dict):
            for step in fn["steps"].values():
                if isinstance(step, dict):
                    step["runtime"] = {"type": "ws", "url": connect_url(app.app_name, str(fn.get("id") or ""))}
    try:
        caps = orjson.loads(data.capabilities) if data.capabilities else None
    except orjson.JSONDecodeError:
        caps = None
    body: dict[str, Any] = {
        "appName": app.app_name, "functions": functions, "sdk": sdk, "framework": data.framework or "connect",
        "deployType": "connect", "v": "0.1",
    }
    if app.HasField("app_version"):
        body["appVersion"] = app.app_version
    if isinstance(caps, dict):
        body["capabilities"] = caps
    try:
        outcome = await service.registry.register(body, app_url=f"connect://{app.app_name}", env_id=env_id)
    except RegistrationError as exc:
        detail = f": {exc.data}" if exc.data else ""
        raise HandshakeError("connect_worker_sync_failed", f"app {app.app_name!r}: {exc.message}{detail}") from exc
    except StoreUnavailable as exc:
        # the worker is told, and connects again after its back-off, as after any refused handshake
        raise HandshakeError("connect_worker_sync_failed",
                             f"app {app.app_name!r}: the server's database is unavailable, nothing was synced; "
                             f"try again: {exc}") from exc
    await service.after_sync(outcome)
    return outcome.app.id


async def _session(service: Service, ws: WebSocket, worker: Worker, send: Any) -> None:
    hub = service.connect
    silence_s = MISSED_HEARTBEATS * HEARTBEAT_MS / 1000
    while True:
        try:
            msg = await asyncio.wait_for(_receive(ws), timeout=silence_s)
        except TimeoutError:
            log.warning("connect: worker %s (%s) missed %d heartbeats: closing its connection",
                        worker.instance_id, worker.id, MISSED_HEARTBEATS)
            await ws.close(code=4002, reason="CONSECUTIVE_HEARTBEATS_MISSED")
            return
        worker.last_heartbeat_ms = service.clock.now_ms()
        kind = msg.kind
        if kind == pb.WORKER_HEARTBEAT:
            await send(frame(pb.GATEWAY_HEARTBEAT))
        elif kind == pb.WORKER_REPLY:
            reply = _parse(pb.SDKResponse, msg.payload)
            if reply is None:
                continue
            if not hub.reply(reply, lambda env: env == worker.env_id):
                if hub.peers is not None:  # the worker moved here from the process holding it
                    _background(hub.peers.flush(msg.payload))
                else:
                    log.info("connect: reply to request %s came after its attempt ended; dropped",
                             reply.request_id)
            await send(frame(pb.WORKER_REPLY_ACK, pb.WorkerReplyAckData(request_id=reply.request_id)))
        elif kind == pb.WORKER_REQUEST_ACK:
            ack = _parse(pb.WorkerRequestAckData, msg.payload)
            if ack is not None:
                hub.acked(ack.request_id)
        elif kind == pb.WORKER_REQUEST_EXTEND_LEASE:
            ext = _parse(pb.WorkerRequestExtendLeaseData, msg.payload)
            if ext is None:
                continue
            if hub.holds(ext.request_id) or hub.peers is None:
                await send(frame(pb.WORKER_REQUEST_EXTEND_LEASE_ACK,
                                 extend_ack(ext, hub.extend(ext.request_id, ext.lease_id))))
            else:  # the worker moved here from the process holding the request: extend it there
                _background(_extend_elsewhere(hub, ext, msg.payload, send))
        elif kind == pb.WORKER_PAUSE:
            log.info("connect: worker %s (%s) is draining", worker.instance_id, worker.id)
            hub.drain(worker.id)
        elif kind == pb.WORKER_READY:
            hub.mark_ready(worker.id)
        # WORKER_STATUS: nothing to do


def extend_ack(ext: pb.WorkerRequestExtendLeaseData, new_lease: str | None) -> pb.WorkerRequestExtendLeaseAckData:
    """The answer to a lease extension: without a new lease id, the worker stops the step."""
    answer = pb.WorkerRequestExtendLeaseAckData(
        request_id=ext.request_id, account_id=ext.account_id, env_id=ext.env_id, app_id=ext.app_id,
        function_slug=ext.function_slug)
    if new_lease is not None:
        answer.new_lease_id = new_lease
    return answer


async def _extend_elsewhere(hub: Any, ext: pb.WorkerRequestExtendLeaseData, raw: bytes, send: Any) -> None:
    new_lease = await hub.peers.extend(raw)
    try:
        await send(frame(pb.WORKER_REQUEST_EXTEND_LEASE_ACK, extend_ack(ext, new_lease)))
    except Exception:  # noqa: S110 - the connection went away meanwhile: it extends again elsewhere
        pass


_TASKS: set[asyncio.Task[None]] = set()


def _background(work: Any) -> None:
    task = asyncio.ensure_future(work)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def _parse(cls: Any, payload: bytes) -> Any:
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except DecodeError:
        log.warning("connect: an unreadable %s payload was ignored", cls.__name__)
        return None
    return msg
