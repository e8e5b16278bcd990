"""The ASGI application: every route of the server on one port."""

from __future__ import annotations

import logging
from importlib import metadata

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyngest.server.api.auth import AuthMiddleware, DashboardAuth
from pyngest.server.api.connect import ConnectAPI
from pyngest.server.api.env_rest import EnvREST
from pyngest.server.api.envs import BearerEnv
from pyngest.server.api.events import EventAPI
from pyngest.server.api.graphql.resolvers import GraphQLEndpoint
from pyngest.server.api.guard import BrowserGuard
from pyngest.server.api.lane import checkpoint_run
from pyngest.server.api.limits import DEFAULT_MAX_BODY_BYTES, BodyTooLarge, announced_length
from pyngest.server.api.live import LiveAPI
from pyngest.server.api.manage import Operations
from pyngest.server.api.manage_rest import ManageREST
from pyngest.server.api.metrics import MetricsAPI
from pyngest.server.api.openapi import OpenAPI
from pyngest.server.api.operations import OperationsAPI
from pyngest.server.api.realtime import RealtimeAPI
from pyngest.server.api.rest import RestAPI
from pyngest.server.api.sdk import SdkAPI
from pyngest.server.api.webhooks import WebhooksREST
from pyngest.server.service import Service
from pyngest.server.store.base import StoreUnavailable
from pyngest.server.ui import Dashboard

log = logging.getLogger("pyngest.api")


class ServerKindHeader:
    """Every response says which kind of server answered (``X-Inngest-Server-Kind``).

    ``POST /e/{key}`` goes straight to the event API's own ASGI handler, skipping the router;
    so do checkpoints (``POST /v1/checkpoint/{runId}/async``, one per step of a checkpointing
    SDK), to an app of their own that caps the body and adds the header itself.

    Every other request's body is capped at ``DEFAULT_MAX_BODY_BYTES`` (a route may cap it lower):
    refused before it is read when ``Content-Length`` says it is over, and the moment it is over
    otherwise.
    """

    def __init__(self, app: ASGIApp, kind: str, events: ASGIApp, checkpoints: ASGIApp | None = None) -> None:
        self.app = app
        self.events = events
        self.checkpoints = checkpoints
        self.header = (b"x-inngest-server-kind", kind.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/e/") and len(path) > 3 and "/" not in path[3:]:
            app = self.events
        else:
            announced = announced_length(scope["headers"])
            if announced is not None and announced > DEFAULT_MAX_BODY_BYTES:
                app = _too_large
            elif self.checkpoints is not None and scope["method"] == "POST" and checkpoint_run(path):
                # caps the body and says which kind of server answers itself
                await self.checkpoints(scope, receive, send)
                return
            else:
                receive = _capped(receive, DEFAULT_MAX_BODY_BYTES)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], self.header]
            await send(message)

        await app(scope, receive, send_with_header)


def _checkpoint_app(sdk: SdkAPI, server_kind: bytes) -> ASGIApp:
    """``POST /v1/checkpoint/{runId}/async`` as an ASGI app of its own: no router, no middleware
    (the paths it takes are open to the SDKs: the auth middleware would pass them on unchanged),
    no request or response objects on the way of a stored step. A checkpointing SDK sends one
    per step and waits for its answer before the next step runs."""
    stored_headers = [(b"content-length", b"0"), (b"x-inngest-server-kind", server_kind)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_params"] = {"run_id": checkpoint_run(scope["path"])}
        request = Request(scope, receive)
        response: Response | None
        try:
            response = await sdk.checkpoint(request, await _body(receive))
        except BodyTooLarge as exc:
            response = _body_too_large_response(exc)
        except StoreUnavailable as exc:
            response = await _store_unavailable(request, exc)
        if response is None:
            # fresh messages: a server may add to what it is sent
            await send({"type": "http.response.start", "status": 200, "headers": list(stored_headers)})
            await send({"type": "http.response.body", "body": b""})
            return
        response.raw_headers.append((b"x-inngest-server-kind", server_kind))
        await response(scope, receive, send)

    return app


async def _body(receive: Receive) -> bytes:
    """The request's body, at most ``DEFAULT_MAX_BODY_BYTES`` (BodyTooLarge beyond)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > DEFAULT_MAX_BODY_BYTES:
            raise BodyTooLarge(DEFAULT_MAX_BODY_BYTES)
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > DEFAULT_MAX_BODY_BYTES:
            raise BodyTooLarge(DEFAULT_MAX_BODY_BYTES)
        parts.append(chunk)
    return b"".join(parts)


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` raising BodyTooLarge once the body passes ``limit`` bytes."""
    size = 0

    async def capped() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise BodyTooLarge(limit)
        return message

    return capped


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = _body_too_large_response(BodyTooLarge(DEFAULT_MAX_BODY_BYTES))
    await response(scope, receive, send)


def _body_too_large_response(exc: BodyTooLarge) -> Response:
    # the rest of the body is not wanted: the connection ends with the answer
    return JSONResponse({"error": str(exc), "status": 413}, status_code=413, headers={"Connection": "close"})


async def _body_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    return _body_too_large_response(exc)


def build_app(service: Service) -> ASGIApp:
    events = EventAPI(service)
    sdk = SdkAPI(service)
    rest = RestAPI(service)
    ops = Operations(service)
    op_api = OperationsAPI(service, ops)
    gql = GraphQLEndpoint(service, ops)
    manage = ManageREST(service, ops)
    envs = EnvREST(service)
    hooks = WebhooksREST(service, ops)
    auth = DashboardAuth(service.config, service.store)
    auth.sessions = service.api_state.setdefault("sign-ins", auth.sessions)
    live = LiveAPI(service)
    metrics = MetricsAPI(service)
    realtime = RealtimeAPI(service)
    openapi = OpenAPI(_version())
    dashboard = Dashboard(mode=service.config.mode)
    routes: list[BaseRoute] = [
        Route("/health", sdk.health, methods=["GET"]),
        Route("/e/{key}", events.receive, methods=["POST"]),
        Route("/invoke/{slug:path}", events.invoke, methods=["POST"]),
        Route("/fn/register", sdk.register, methods=["POST"]),
        Route("/dev", sdk.dev_info, methods=["GET"]),
        Route("/v0/gql", gql.handle, methods=["POST"]),
        Route("/v0/runs/{run_id}/batch", sdk.run_batch, methods=["GET"]),
        Route("/v0/runs/{run_id}/actions", sdk.run_actions, methods=["GET"]),
        Route("/v0/runs/{run_id}", rest.cancel_run, methods=["DELETE"]),
        Route("/v1/events", rest.list_events, methods=["GET"]),
        Route("/v1/events/{event_id}", rest.get_event, methods=["GET"]),
        Route("/v1/events/{event_id}/runs", rest.event_runs, methods=["GET"]),
        Route("/v1/events/{event_id}/skips", rest.event_skips, methods=["GET"]),
        Route("/v1/runs", rest.list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", rest.get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}", rest.cancel_run, methods=["DELETE"]),
        Route("/v1/runs/{run_id}/cancel", rest.cancel_run, methods=["POST"]),
        Route("/v1/signals", sdk.signal, methods=["POST"]),
        Route("/v1/checkpoint/{run_id}/async", sdk.checkpoint_async, methods=["POST"]),
        Route("/v1/http/runs/{run_id}/async", sdk.checkpoint_async, methods=["POST"]),
        Route("/v1/apps", rest.add_app, methods=["POST"]),
        Route("/v1/runs/{run_id}/rerun", op_api.rerun, methods=["POST"]),
        Route("/v1/functions/{function_id}/pause", op_api.pause, methods=["POST"]),
        Route("/v1/functions/{function_id}/resume", op_api.resume, methods=["POST"]),
        Route("/v1/cancellations", op_api.create_cancellation, methods=["POST"]),
        Route("/v1/cancellations", op_api.list_operations, methods=["GET"]),
        Route("/v1/cancellations/{op_id}", op_api.get_operation, methods=["GET"]),
        Route("/v1/cancellations/{op_id}", op_api.stop_operation, methods=["DELETE"]),
        Route("/v1/replays", op_api.create_replay, methods=["POST"]),
        Route("/v1/replays", op_api.list_operations, methods=["GET"]),
        Route("/v1/replays/{op_id}", op_api.get_operation, methods=["GET"]),
        Route("/v1/replays/{op_id}", op_api.stop_operation, methods=["DELETE"]),
        Route("/v1/apps/{app_name}/functions", rest.app_functions, methods=["GET"]),
        # the dashboard's management API
        Route("/v1/apps", manage.list_apps, methods=["GET"]),
        Route("/v1/apps/{app_id}", manage.update_app, methods=["PATCH"]),
        Route("/v1/apps/{app_id}", manage.delete_app, methods=["DELETE"]),
        Route("/v1/apps/{app_id}/sync", manage.sync_app, methods=["POST"]),
        Route("/v1/functions", manage.list_functions, methods=["GET"]),
        Route("/v1/functions/{function_id}/invoke", manage.invoke, methods=["POST"]),
        Route("/v1/events", manage.send_events, methods=["POST"]),
        # environments and keys (start mode)
        Route("/v1/envs", envs.list_envs, methods=["GET"]),
        Route("/v1/envs", envs.create_env, methods=["POST"]),
        Route("/v1/envs/{env_id}", envs.update_env, methods=["PATCH"]),
        Route("/v1/envs/{env_id}/archive", envs.archive, methods=["POST"]),
        Route("/v1/envs/{env_id}/unarchive", envs.archive, methods=["POST"]),
        Route("/v1/keys/event", envs.list_event_keys, methods=["GET"]),
        Route("/v1/keys/event", envs.create_event_key, methods=["POST"]),
        Route("/v1/keys/event/{key_id}", envs.update_event_key, methods=["PATCH"]),
        Route("/v1/keys/event/{key_id}", envs.delete_event_key, methods=["DELETE"]),
        Route("/v1/keys/event/{key_id}/rotate", envs.rotate_event_key, methods=["POST"]),
        Route("/v1/keys/signing", envs.list_signing_keys, methods=["GET"]),
        Route("/v1/keys/signing", envs.create_signing_key, methods=["POST"]),
        Route("/v1/keys/signing/rotate", envs.rotate_signing_key, methods=["POST"]),
        Route("/v1/keys/signing/{key_id}", envs.delete_signing_key, methods=["DELETE"]),
        # webhooks (docs/webhooks.md)
        Route("/v1/webhooks", hooks.list_webhooks, methods=["GET"]),
        Route("/v1/webhooks", hooks.create_webhook, methods=["POST"]),
        Route("/v1/webhooks/test", hooks.test_transform, methods=["POST"]),
        Route("/v1/webhooks/failures/{failure_id}/replay", hooks.replay_failure, methods=["POST"]),
        Route("/v1/webhooks/{webhook_id}", hooks.get_webhook, methods=["GET"]),
        Route("/v1/webhooks/{webhook_id}", hooks.update_webhook, methods=["PUT", "PATCH"]),
        Route("/v1/webhooks/{webhook_id}", hooks.delete_webhook, methods=["DELETE"]),
        Route("/v1/webhooks/{webhook_id}/failures", hooks.list_failures, methods=["GET"]),
        Route("/v0/live", live.stream, methods=["GET"]),
        # realtime (PROTOCOL.md §13): each route checks its own token or signing key
        Route("/v1/realtime/publish", realtime.publish, methods=["POST"]),
        Route("/v1/realtime/token", realtime.token, methods=["POST"]),
        Route("/v1/realtime/sse", realtime.sse, methods=["GET"]),
        WebSocketRoute("/v1/realtime/connect", realtime.connect),
        Route("/metrics", metrics.scrape, methods=["GET"]),
        Route("/openapi.json", openapi.serve, methods=["GET"]),
        Route("/login", auth.login_page, methods=["GET"]),
        Route("/auth/login", auth.login, methods=["POST"]),
        Route("/auth/logout", auth.logout, methods=["POST"]),
        Route("/auth/status", auth.status, methods=["GET"]),
        *ConnectAPI(service).routes(),
        *dashboard.routes(),
    ]
    app = Starlette(routes=routes, exception_handlers={
        StoreUnavailable: _store_unavailable, BodyTooLarge: _body_too_large})
    app.state.operations = ops
    # BearerEnv outside: the routes ServerKindHeader serves directly (checkpoints) need it too
    served = ServerKindHeader(AuthMiddleware(app, auth), service.config.server_kind, events.asgi,
                              _checkpoint_app(sdk, service.config.server_kind.encode()))
    return BrowserGuard(BearerEnv(served, service.registry.envs), service.config)


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """The database is unreachable: nothing was done; the caller may try again."""
    log.warning("%s %s: the store is unavailable: %s", request.method, request.url.path, exc)
    return JSONResponse({"error": f"the server's database is unavailable, nothing was changed; try again: {exc}",
                         "status": 503}, status_code=503, headers={"Retry-After": "1"})


def _version() -> str:
    try:
        return metadata.version("pyngest")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"
