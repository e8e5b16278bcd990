"""Connect's HTTP side (PROTOCOL.md §9.4, §12): where a worker starts a connection, where it
flushes replies its WebSocket could not carry, and the list of live connections.

In ``start`` mode these need a signing key as a Bearer token (raw or hashed), as upstream. The
key selects the environment a worker connects in, and ``x-inngest-env`` on ``/start`` one of its
branches (created on first use, as a sync creates it): the official SDKs send their ``env``
(``INNGEST_ENV``) there, and again as ``environment`` in WORKER_CONNECT.
"""

from __future__ import annotations

import secrets
from typing import Any

from google.protobuf.message import DecodeError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.api.common import (
    BEARER_ENV,
    bearer_ok,
    json_response,
    public_error,
    unauthorized,
)
from pyngest.server.api.envs import reaches, request_env, requested_env, select_env
from pyngest.server.connect import gateway
from pyngest.server.connect.hub import Session
from pyngest.server.connect.peers import (
    ENV_HEADER,
    EXTEND_PATH,
    FORWARD_PATH,
    FORWARDED,
    SDK_HEADER,
)
from pyngest.server.environments import EnvError
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.service import Service

PROTOBUF = "application/protobuf"
GATEWAY_PATH = "/v0/connect"
MAX_OPEN_SESSIONS = 10_000  # started connections not yet on the gateway (each lives 10 minutes)
SESSION_TTL_MS = 600_000


class ConnectAPI:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.config = service.config

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v0/connect/start", self.start, methods=["POST"]),
            Route("/v0/connect/flush", self.flush, methods=["POST"]),
            Route(FORWARD_PATH, self.forwarded, methods=["POST"]),
            Route(EXTEND_PATH, self.extend, methods=["POST"]),
            Route("/v0/connect/envs/{env_id}/conns", self.conns, methods=["GET"]),
            WebSocketRoute(GATEWAY_PATH, self.websocket),
        ]

    async def websocket(self, ws: WebSocket) -> None:
        await gateway.serve(self.service, ws)

    async def start(self, request: Request) -> Response:
        """A new connection: its id, the gateway to dial, and the token to present there."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        req = await _parse(request, pb.StartRequest)
        if isinstance(req, Response):
            return req
        hub = self.service.connect
        now = self.service.clock.now_ms()
        hub.expire_sessions(now - SESSION_TTL_MS)
        if len(hub.sessions) >= MAX_OPEN_SESSIONS:
            return public_error("too many connections started and not yet opened on the gateway; "
                                "try again in a minute", 429)
        try:
            # the signing key names the environment; x-inngest-env a branch of it (made if new)
            env_id = await request_env(request, self.service, create=True)
        except EnvError as exc:
            return public_error(f"x-inngest-env: {exc.message}", exc.status)
        from pyngest.protocol.ids import new_ulid

        conn_id = new_ulid()
        token = secrets.token_hex(24)
        named = requested_env(request) is not None
        hub.open_session(conn_id, Session(token, env_id, now, request.scope.get(BEARER_ENV), named))
        resp = pb.StartResponse(
            connection_id=conn_id, gateway_endpoint=self.gateway_endpoint(request),
            gateway_group=self.config.connect_gateway_group, session_token=token, sync_token=token,
        )
        return Response(resp.SerializeToString(), media_type=PROTOBUF)

    def gateway_endpoint(self, request: Request) -> str:
        """Where the worker dials: the host it reached the API on, at the gateway's port."""
        scheme = "wss" if request.url.scheme == "https" else "ws"
        host = request.url.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        port = self.config.connect_gateway_port or request.url.port
        return f"{scheme}://{host}{f':{port}' if port else ''}{GATEWAY_PATH}"

    async def flush(self, request: Request) -> Response:
        """A reply the worker could not deliver over its WebSocket (it reconnected or closed)."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        raw = await request.body()
        reply = await _parse(request, pb.SDKResponse)
        if isinstance(reply, Response):
            return reply
        if not reply.request_id:
            return public_error("the SDKResponse has no request_id", 400)
        hub = self.service.connect
        # a late reply (its lease lapsed) is acknowledged and dropped; one no request here waits
        # for may be another process's (scale-out)
        if not hub.reply(reply, reaches(request, self.service)) and hub.peers is not None \
                and not request.headers.get(FORWARDED):
            await hub.peers.flush(raw)
        return Response(pb.FlushResponse(request_id=reply.request_id).SerializeToString(), media_type=PROTOBUF)

    async def forwarded(self, request: Request) -> Response:
        """Scale-out: another process's request for an app whose worker is connected here."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        h = request.headers
        if not h.get(FORWARDED):
            return public_error("only the server's own processes forward connect requests", 400)
        found = await self.service.connect.execute_forwarded(
            url=h.get("x-pyngest-connect-url", ""), step_id=h.get("x-pyngest-step-id", ""),
            body=await request.body(), run_id=h.get("x-pyngest-run-id", ""), job_id=h.get("x-pyngest-job-id", ""),
            env_id=h.get(ENV_HEADER) or DEFAULT_ENV)
        if found is None:
            return public_error("no connect worker of this app is connected to this process", 404)
        outcome, sdk = found
        if isinstance(outcome, str):
            return Response(outcome, status_code=502, media_type="text/plain")
        return Response(outcome.SerializeToString(), media_type=PROTOBUF, headers={SDK_HEADER: sdk})

    async def extend(self, request: Request) -> Response:
        """Scale-out: a lease extension a worker sent to another process (it reconnected there in
        the middle of a step) for a request this process holds: the ack, with the new lease id
        unless the lease is no longer the worker's; 404 when the request is not held here."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        if not request.headers.get(FORWARDED):
            return public_error("only the server's own processes pass lease extensions on", 400)
        ext = await _parse(request, pb.WorkerRequestExtendLeaseData)
        if isinstance(ext, Response):
            return ext
        hub = self.service.connect
        if not hub.holds(ext.request_id):
            return public_error("no connect request of this id is held by this process", 404)
        ack = gateway.extend_ack(ext, hub.extend(ext.request_id, ext.lease_id))
        return Response(ack.SerializeToString(), media_type=PROTOBUF)

    async def conns(self, request: Request) -> Response:
        """The live connections of one environment on this process (upstream:
        ``ShowConnsReply``), as JSON, with how many requests it forwarded to / ran for other
        processes (scale-out). ``env_id``: an environment's id or name (``pyngest dev`` has one)."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        try:
            env_id = await self.path_env(request, request.path_params["env_id"])
        except EnvError as exc:
            return public_error(exc.message, exc.status)
        app_name = request.query_params.get("app")
        out: list[dict[str, Any]] = []
        hub = self.service.connect
        for w in hub.workers_in(env_id):
            if app_name and app_name not in w.apps:
                continue
            out.append(describe(w, len(w.inflight)))
        return json_response({"data": out, "forwarded": hub.forwarded})

    async def path_env(self, request: Request, ident: str) -> str:
        """The environment ``{envId}`` names, by id or name, among those the caller's key reaches
        (a dashboard session and the default environment's key: all; another environment's key:
        its own and its branches)."""
        if self.config.mode == "dev":
            return DEFAULT_ENV  # one local environment, whatever the path says
        env_id: str | None = ident
        if ident not in self.service.registry.envs.envs:
            try:
                env_id = await select_env(self.service, request.scope.get(BEARER_ENV), ident)
            except EnvError:
                env_id = None
        if env_id is None or not reaches(request, self.service)(env_id):
            raise EnvError(f"environment {ident!r} not found: /v0/connect/envs/{{envId}}/conns names an "
                           "environment by id or name, one the signing key reaches", 404)
        return env_id


async def _parse(request: Request, cls: Any) -> Any:
    """The body as a ``cls`` protobuf message, or the 400 that says it is not one."""
    msg = cls()
    try:
        msg.ParseFromString(await request.body())
    except DecodeError as exc:
        return public_error(f"the body must be a protobuf {cls.__name__} ({PROTOBUF}): {exc}", 400)
    return msg


def describe(w: Any, inflight: int) -> dict[str, Any]:
    """A live connection as the API and the dashboard show it."""
    return {
        "id": w.id, "instance_id": w.instance_id, "env_id": w.env_id, "status": "DRAINING" if w.draining else "READY",
        "apps": sorted(w.apps), "app_ids": sorted(w.apps.values()), "sdk_language": w.sdk_language,
        "sdk_version": w.sdk_version, "platform": w.platform, "max_worker_concurrency": w.capacity,
        "in_flight": inflight, "connected_at": w.connected_ms, "last_heartbeat_at": w.last_heartbeat_ms,
        "attributes": {"cpu_cores": w.cpu_cores, "mem_bytes": w.mem_bytes, "os": w.os},
    }
