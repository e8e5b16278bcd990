"""Serve Inngest functions from a FastAPI app: ``pyngest.fast_api.serve(app, client, fns)``."""

from __future__ import annotations

from typing import Any

from pyngest import starlette as _starlette
from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function

FRAMEWORK = "fast_api"


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
    """Add the Inngest endpoint (GET, POST, PUT at ``/api/inngest``) to a FastAPI app.

    Args:
        app: the FastAPI app.
        client: the Inngest client.
        functions: functions to serve.
        enable_unauthed_sync: allow unsigned sync PUTs in production mode (default: yes, unless
            ``INNGEST_ENABLE_UNAUTHED_SYNC=false``).
        public_path: the path the server calls, when a proxy rewrites it.
        serve_origin: the origin the server calls (``INNGEST_SERVE_ORIGIN``).
        serve_path: where to serve (``INNGEST_SERVE_PATH``, default ``/api/inngest``).
        streaming: ``Streaming.FORCE`` sends keep-alive bytes until the response is ready.
    """
    handler = _starlette.make_handler(
        client, functions, framework=FRAMEWORK, enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path, serve_origin=serve_origin, serve_path=serve_path, streaming=streaming,
    )
    path = config.serve_path(serve_path) or config.DEFAULT_SERVE_PATH
    app.add_route(path, _starlette.Endpoint(handler), methods=["GET", "POST", "PUT"], include_in_schema=False)
