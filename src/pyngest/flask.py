"""Serve Inngest functions from a Flask app: ``pyngest.flask.serve(app, client, fns)``."""

from __future__ import annotations

from typing import Any

import flask

from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, lower_headers

FRAMEWORK = "flask"


def serve(
    app: flask.Flask,
    client: Inngest,
    functions: list[Function[Any]],
    *,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
) -> None:
    """Add the Inngest endpoint (GET, POST, PUT at ``/api/inngest``) to a Flask app.

    Async functions run on a fresh event loop inside the request's thread, so Flask needs no
    async extra.
    """
    handler = CommHandler(
        client=client,
        framework=FRAMEWORK,
        functions=functions,
        streaming=Streaming.DISABLE,  # this adapter writes whole bodies
        enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path,
        serve_origin=serve_origin,
        serve_path=serve_path,
    )

    def inngest_api() -> flask.Response:
        req = flask.request
        res = handler.handle_sync(
            Request(
                method=req.method,
                body=req.get_data(),
                headers=lower_headers(req.headers.items()),
                query=dict(req.args.items()),
                url=req.url,
                raw_request=req,
            )
        )
        return flask.Response(response=res.body, status=res.status, headers=res.headers)

    app.add_url_rule(
        config.serve_path(serve_path) or config.DEFAULT_SERVE_PATH,
        endpoint="inngest_api",
        view_func=inngest_api,
        methods=["GET", "POST", "PUT"],
    )
