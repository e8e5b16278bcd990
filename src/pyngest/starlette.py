"""Serve Inngest functions from any Starlette app, or as a bare ASGI app."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, Response, lower_headers

FRAMEWORK = "starlette"


async def to_request(request: StarletteRequest) -> Request:
    return Request(
        method=request.method,
        body=await request.body(),
        headers=lower_headers(request.headers.items()),
        query=dict(request.query_params.items()),
        url=str(request.url),
        raw_request=request,
    )


def to_response(res: Response) -> StarletteResponse:
    if res.stream is not None:
        return StreamingResponse(res.stream(), status_code=res.status, headers=res.headers)
    return StarletteResponse(content=res.body, status_code=res.status, headers=res.headers)


def make_handler(
    client: Inngest,
    functions: list[Function[Any]],
    *,
    framework: str,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Streaming | None = None,
) -> CommHandler:
    return CommHandler(
        client=client,
        framework=framework,
        functions=functions,
        streaming=streaming,
        enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path,
        serve_origin=serve_origin,
        serve_path=serve_path,
    )


def endpoint(handler: CommHandler) -> Any:
    async def inngest_endpoint(request: StarletteRequest) -> StarletteResponse:
        return to_response(await handler.handle(await to_request(request)))

    return inngest_endpoint


def serve(
    app: Any,
    client: Inngest,
    functions: list[Function[Any]],
    *,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Streaming | None = None,
) -> None:
    """Add the Inngest endpoint (GET, POST, PUT at ``/api/inngest``) to a Starlette app."""
    handler = make_handler(
        client, functions, framework=FRAMEWORK, enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path, serve_origin=serve_origin, serve_path=serve_path, streaming=streaming,
    )
    path = config.serve_path(serve_path) or config.DEFAULT_SERVE_PATH
    app.add_route(path, endpoint(handler), methods=["GET", "POST", "PUT"])


def asgi_app(
    client: Inngest,
    functions: list[Function[Any]],
    *,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    streaming: Streaming | None = None,
) -> ASGIApp:
    """A plain ASGI app that answers every path as the Inngest endpoint (mount it anywhere)."""
    handler = make_handler(
        client, functions, framework=FRAMEWORK, enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path, serve_origin=serve_origin, serve_path=serve_path, streaming=streaming,
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = StarletteRequest(scope, receive)
        response = to_response(await handler.handle(await to_request(request)))
        await response(scope, receive, send)

    return app
