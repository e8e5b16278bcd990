"""Connect's HTTP side (PROTOCOL.md §9.4, §12): where a worker starts a connection, where it
flushes replies its WebSocket could not carry, and the list of live connections.

In ``start`` mode these need the signing key as a Bearer token (raw or hashed), as upstream.
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
from pyngest.server.api.common import bearer_ok, json_response, public_error, unauthorized
from pyngest.server.connect import gateway
from pyngest.server.connect.peers import FORWARD_PATH, FORWARDED, SDK_HEADER
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
        from pyngest.protocol.ids import new_ulid

        conn_id = new_ulid()
        token = secrets.token_hex(24)
        hub.open_session(conn_id, token, now)
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
        if not hub.reply(reply) and hub.peers is not None and not request.headers.get(FORWARDED):
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
            body=await request.body(), run_id=h.get("x-pyngest-run-id", ""), job_id=h.get("x-pyngest-job-id", ""))
        if found is None:
            return public_error("no connect worker of this app is connected to this process", 404)
        outcome, sdk = found
        if isinstance(outcome, str):
            return Response(outcome, status_code=502, media_type="text/plain")
        return Response(outcome.SerializeToString(), media_type=PROTOBUF, headers={SDK_HEADER: sdk})

    async def conns(self, request: Request) -> Response:
        """The live connections of this process (upstream: ``ShowConnsReply``), as JSON, with
        how many requests it forwarded to / ran for other processes (scale-out)."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        app_name = request.query_params.get("app")
        out: list[dict[str, Any]] = []
        hub = self.service.connect
        for w in hub.workers.values():
            if app_name and app_name not in w.apps:
                continue
            out.append(describe(w, len(w.inflight)))
        return json_response({"data": out, "forwarded": hub.forwarded})


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
        "id": w.id, "instance_id": w.instance_id, "status": "DRAINING" if w.draining else "READY",
        "apps": sorted(w.apps), "app_ids": sorted(w.apps.values()), "sdk_language": w.sdk_language,
        "sdk_version": w.sdk_version, "platform": w.platform, "max_worker_concurrency": w.capacity,
        "in_flight": inflight, "connected_at": w.connected_ms, "last_heartbeat_at": w.last_heartbeat_ms,
        "attributes": {"cpu_cores": w.cpu_cores, "mem_bytes": w.mem_bytes, "os": w.os},
    }
