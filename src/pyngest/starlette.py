"""Serve Inngest functions from any Starlette app, or as a bare ASGI app."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request as StarletteRequest
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, Response

FRAMEWORK = "starlette"


@functools.lru_cache(maxsize=256)
def query_pairs(query_string: bytes) -> tuple[tuple[str, str], ...]:
    """A query string's pairs, remembered: the server calls with the same few (a function's id
    and ``stepId=step``), and parsing one costs more than the rest of reading the request."""
    return tuple(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))


async def to_request(request: StarletteRequest) -> Request:
    scope = request.scope
    method = request.method
    return Request(
        method=method,
        body=await request.body(),
        # ASGI header names are lower-case bytes already; decoding them directly skips
        # Starlette's Headers object, which costs more than the rest of a step's request here.
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        query=dict(query_pairs(scope.get("query_string", b""))),
        # Only GET and PUT answer with the serve URL; building it is skipped for executions.
        url="" if method == "POST" else str(request.url),
        raw_request=request,
    )


async def send_response(res: Response, scope: Scope, receive: Receive, send: Send) -> None:
    if res.stream is not None:
        await StreamingResponse(res.stream(), status_code=res.status, headers=res.headers)(scope, receive, send)
        return
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in res.headers.items()
               if k.lower() != "content-length"]
    headers.append((b"content-length", str(len(res.body)).encode()))
    await send({"type": "http.response.start", "status": res.status, "headers": headers})
    await send({"type": "http.response.body", "body": res.body})


class Endpoint:
    """The Inngest endpoint as a bare ASGI app. Routed as an ASGI app (not a request function),
    it skips the framework's per-request wrapping: for FastAPI that is dependency solving and a
    response object per call, about a third of a step's cost in the app."""

    def __init__(self, handler: CommHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = StarletteRequest(scope, receive)
        await send_response(await self.handler.handle(await to_request(request)), scope, receive, send)


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
    app.add_route(path, Endpoint(handler), methods=["GET", "POST", "PUT"])


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

    return Endpoint(handler)
