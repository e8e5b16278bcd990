"""REST v1 routes for managing apps and functions, bulk cancellation, replay and rerun.

``POST /v1/cancellations`` takes upstream's documented body (guides__cancel-running-functions):
``{app_id, function_id, started_after, started_before, if}``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms
from pyngest.server.api.common import api_error, bearer_ok, json_response, unauthorized
from pyngest.server.api.envs import request_env
from pyngest.server.api.limits import DEFAULT_MAX_BODY_BYTES, request_body
from pyngest.server.api.manage import NotFound, OperationError, Operations
from pyngest.server.environments import EnvError
from pyngest.server.service import Service
from pyngest.server.store.base import AppRecord


def app_json(app: AppRecord, service: Service) -> dict[str, Any]:
    fns = [f for f in service.registry.functions.values() if f.app_id == app.id]
    return {
        "id": app.id, "name": app.name, "url": app.url, "sdk_language": app.sdk_language,
        "sdk_version": app.sdk_version, "framework": app.framework or None, "app_version": app.app_version or None,
        "error": app.error, "function_count": len(fns), "updated_at": iso_ms(app.updated_ms) if app.updated_ms else None,
    }


class ManageREST:
    def __init__(self, service: Service, ops: Operations) -> None:
        self.s = service
        self.ops = ops

    def _meta(self) -> dict[str, Any]:
        return {"fetched_at": iso_ms(self.s.clock.now_ms()), "cached_until": None}

    async def _call(self, request: Request, handler: Any) -> Response:
        if not bearer_ok(request, self.s.config):
            return unauthorized()
        # sending events or invoking: the Event API's request limit (over it, BodyTooLarge answers 413)
        makes_events = request.url.path == "/v1/events" or request.url.path.endswith("/invoke")
        limit = self.s.config.event_request_limit if makes_events else DEFAULT_MAX_BODY_BYTES
        raw = await request_body(request, limit)
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            return api_error(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict) and not (isinstance(body, list) and request.url.path == "/v1/events"):
            return api_error("the body must be a JSON object", 400)
        try:
            request.state.env = await request_env(request, self.s)
            data, status = await handler(request, body)
        except OperationError as exc:
            return api_error(str(exc), 404 if isinstance(exc, NotFound) else 400)
        except EnvError as exc:
            return api_error(exc.message, exc.status)
        return json_response({"data": data, "metadata": self._meta()}, status)

    # -- apps
    async def list_apps(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            apps = sorted(self.s.registry.apps_of(req.state.env), key=lambda a: a.name)
            return [app_json(a, self.s) for a in apps], 200
        return await self._call(request, h)

    async def update_app(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            if not isinstance(body.get("url"), str):
                raise OperationError('send {"url": "http(s)://host:port/api/inngest"}')
            app, error = await self.ops.update_app(req.path_params["app_id"], body["url"])
            return {**app_json(app, self.s), "sync_error": error}, 200 if error is None else 502
        return await self._call(request, h)

    async def delete_app(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            app = await self.ops.delete_app(req.path_params["app_id"])
            return {"id": app.id, "deleted": True}, 200
        return await self._call(request, h)

    async def sync_app(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            app, error = await self.ops.resync_app(req.path_params["app_id"])
            return {**app_json(app, self.s), "sync_error": error}, 200 if error is None else 502
        return await self._call(request, h)

    # -- functions
    async def list_functions(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            fns = sorted(self.s.registry.functions_of(req.state.env), key=lambda f: f.slug)
            return [{"id": f.id, "slug": f.slug, "name": f.name, "app_id": f.app_id, "paused": f.paused,
                     "config": f.config} for f in fns], 200
        return await self._call(request, h)

    async def invoke(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            fn = self.ops.function(req.path_params["function_id"], req.state.env)
            event_id = await self.ops.invoke(fn, body.get("data"), body.get("user"))
            return {"event_id": event_id}, 200
        return await self._call(request, h)

    async def send_events(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            items = body if isinstance(body, list) else [body]
            return {"ids": await self.ops.send_events(items, req.state.env)}, 200
        return await self._call(request, h)
