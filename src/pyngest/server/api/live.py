"""``GET /v0/live``: server-sent events telling the dashboard what just changed.

Each message is ``{"env": id, "runs": [...ids], "many": bool, "newRuns": n, "steps": n,
"events": [...names]}`` (see :mod:`pyngest.server.live`); pages re-read what they show when it
concerns them. A stream tells of one environment, the one the request selects (``x-inngest-env``,
as a query parameter since a browser's EventSource sends no headers of its own). A comment line
every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pyngest.server.api.common import api_error
from pyngest.server.api.envs import request_env
from pyngest.server.environments import EnvError
from pyngest.server.service import Service

KEEPALIVE_S = 15.0


class LiveAPI:
    def __init__(self, service: Service) -> None:
        self.s = service
        self.hub = service.live

    async def stream(self, request: Request) -> Response:
        try:
            env_id = await request_env(request, self.s)
        except EnvError as exc:
            return api_error(exc.message, exc.status)
        queue = self.hub.subscribe(env_id)

        async def messages() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield b"data: " + orjson.dumps(message) + b"\n\n"
            finally:
                self.hub.unsubscribe(queue)

        return StreamingResponse(messages(), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })
