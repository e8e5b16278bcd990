"""Serve Inngest functions from a Tornado app: ``pyngest.tornado.serve(app, client, fns)``."""

from __future__ import annotations

from typing import Any

import tornado.web

from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, lower_headers

FRAMEWORK = "tornado"


def serve(
    app: tornado.web.Application,
    client: Inngest,
    functions: list[Function[Any]],
    *,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
) -> None:
    """Add the Inngest endpoint (GET, POST, PUT at ``/api/inngest``) to a Tornado app.

    The handlers are coroutines, so a long step does not block Tornado's IOLoop for async
    functions; plain functions run in a thread pool.
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

    class InngestHandler(tornado.web.RequestHandler):
        async def _handle(self) -> None:
            req = self.request
            res = await handler.handle(
                Request(
                    method=req.method or "GET",
                    body=req.body,
                    headers=lower_headers(req.headers.get_all()),
                    query={k: v[0].decode() for k, v in req.query_arguments.items() if v},
                    url=req.full_url(),
                    raw_request=req,
                )
            )
            self.set_status(res.status)
            for k, v in res.headers.items():
                self.set_header(k, v)
            self.write(res.body)

        async def get(self) -> None:
            await self._handle()

        async def post(self) -> None:
            await self._handle()

        async def put(self) -> None:
            await self._handle()

    path = config.serve_path(serve_path) or config.DEFAULT_SERVE_PATH
    app.add_handlers(r".*", [(path, InngestHandler)])
