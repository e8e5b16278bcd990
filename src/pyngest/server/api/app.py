"""The ASGI application: every route of the server on one port."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyngest.server.api.events import EventAPI
from pyngest.server.api.graphql.resolvers import GraphQLEndpoint
from pyngest.server.api.operations import OperationsAPI
from pyngest.server.api.rest import RestAPI
from pyngest.server.api.sdk import SdkAPI
from pyngest.server.service import Service


class ServerKindHeader:
    """Every response says which kind of server answered (``X-Inngest-Server-Kind``).

    ``POST /e/{key}`` goes straight to the event API's own ASGI handler, skipping the router.
    """

    def __init__(self, app: ASGIApp, kind: str, events: ASGIApp) -> None:
        self.app = app
        self.events = events
        self.header = (b"x-inngest-server-kind", kind.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = self.app
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/e/") and len(path) > 3 and "/" not in path[3:]:
            app = self.events

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], self.header]
            await send(message)

        await app(scope, receive, send_with_header)


def build_app(service: Service) -> ASGIApp:
    events = EventAPI(service)
    sdk = SdkAPI(service)
    rest = RestAPI(service)
    gql = GraphQLEndpoint(service)
    ops = OperationsAPI(service)
    routes = [
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
        Route("/v1/runs", rest.list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", rest.get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}", rest.cancel_run, methods=["DELETE"]),
        Route("/v1/runs/{run_id}/cancel", rest.cancel_run, methods=["POST"]),
        Route("/v1/signals", sdk.signal, methods=["POST"]),
        Route("/v1/checkpoint/{run_id}/async", sdk.checkpoint_async, methods=["POST"]),
        Route("/v1/http/runs/{run_id}/async", sdk.checkpoint_async, methods=["POST"]),
        Route("/v1/apps", rest.add_app, methods=["POST"]),
        Route("/v1/runs/{run_id}/rerun", ops.rerun, methods=["POST"]),
        Route("/v1/functions/{fn}/pause", ops.pause, methods=["POST"]),
        Route("/v1/functions/{fn}/resume", ops.resume, methods=["POST"]),
        Route("/v1/cancellations", ops.create_cancellation, methods=["POST"]),
        Route("/v1/cancellations", ops.list_operations, methods=["GET"]),
        Route("/v1/cancellations/{op_id}", ops.get_operation, methods=["GET"]),
        Route("/v1/cancellations/{op_id}", ops.stop_operation, methods=["DELETE"]),
        Route("/v1/replays", ops.create_replay, methods=["POST"]),
        Route("/v1/replays", ops.list_operations, methods=["GET"]),
        Route("/v1/replays/{op_id}", ops.get_operation, methods=["GET"]),
        Route("/v1/replays/{op_id}", ops.stop_operation, methods=["DELETE"]),
        Route("/v1/apps/{app_name}/functions", rest.app_functions, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    return ServerKindHeader(app, service.config.server_kind, events.asgi)
