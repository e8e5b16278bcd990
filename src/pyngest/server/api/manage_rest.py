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
from pyngest.server.api.graphql.dashboard import FROM_NAME, ms
from pyngest.server.api.manage import OperationError, Operations
from pyngest.server.model import RunStatus
from pyngest.server.service import Service
from pyngest.server.store.base import AppRecord, CancellationRecord, ReplayRecord

ENV_ID = "00000000-0000-4000-b000-000000000000"


def app_json(app: AppRecord, service: Service) -> dict[str, Any]:
    fns = [f for f in service.registry.functions.values() if f.app_id == app.id]
    return {
        "id": app.id, "name": app.name, "url": app.url, "sdk_language": app.sdk_language,
        "sdk_version": app.sdk_version, "framework": app.framework or None, "app_version": app.app_version or None,
        "error": app.error, "function_count": len(fns), "updated_at": iso_ms(app.updated_ms) if app.updated_ms else None,
    }


def cancellation_json(rec: CancellationRecord, service: Service) -> dict[str, Any]:
    fn = service.registry.functions.get(rec.fn_id)
    return {
        "id": rec.id, "environment_id": ENV_ID, "name": rec.name, "function_id": fn.slug if fn else rec.fn_id,
        "app_id": fn.app_id if fn else None,
        "started_after": iso_ms(rec.queued_after) if rec.queued_after is not None else None,
        "started_before": iso_ms(rec.queued_before) if rec.queued_before is not None else None,
        "if": rec.expression, "matched": rec.matched, "cancelled": rec.cancelled,
        "created_at": iso_ms(rec.created_ms), "finished_at": iso_ms(rec.finished_ms) if rec.finished_ms else None,
    }


def replay_json(rec: ReplayRecord, service: Service) -> dict[str, Any]:
    fn = service.registry.functions.get(rec.fn_id)
    return {
        "id": rec.id, "name": rec.name, "function_id": fn.slug if fn else rec.fn_id,
        "from": iso_ms(rec.from_ms), "until": iso_ms(rec.until_ms), "statuses": rec.statuses,
        "total": rec.total, "scheduled": rec.scheduled, "created_at": iso_ms(rec.created_ms),
        "finished_at": iso_ms(rec.finished_ms) if rec.finished_ms else None,
    }


def _status(value: str) -> str:
    """Accept "Failed", "FAILED" or "failed"."""
    for status in RunStatus:
        if value.lower() == status.value.lower():
            return status.value
    if value.upper() in FROM_NAME:
        return FROM_NAME[value.upper()].value
    raise OperationError(f"unknown run status {value!r}; use one of {', '.join(s.value for s in RunStatus)}")


class ManageREST:
    def __init__(self, service: Service, ops: Operations) -> None:
        self.s = service
        self.ops = ops

    def _meta(self) -> dict[str, Any]:
        return {"fetched_at": iso_ms(self.s.clock.now_ms()), "cached_until": None}

    async def _call(self, request: Request, handler: Any) -> Response:
        if not bearer_ok(request, self.s.config):
            return unauthorized()
        try:
            raw = await request.body()
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            return api_error(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict) and not (isinstance(body, list) and request.url.path == "/v1/events"):
            return api_error("the body must be a JSON object", 400)
        try:
            data, status = await handler(request, body)
        except OperationError as exc:
            return api_error(str(exc), 404 if "not found" in str(exc) else 400)
        return json_response({"data": data, "metadata": self._meta()}, status)

    # -- apps
    async def list_apps(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            apps = sorted(self.s.registry.apps.values(), key=lambda a: a.name)
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
            fns = sorted(self.s.registry.functions.values(), key=lambda f: f.slug)
            return [{"id": f.id, "slug": f.slug, "name": f.name, "app_id": f.app_id, "paused": f.paused,
                     "config": f.config} for f in fns], 200
        return await self._call(request, h)

    async def pause(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            fn = self.ops.function(req.path_params["function_id"])
            cancelled = await self.ops.pause(fn, cancel_running=bool(body.get("cancel_running")))
            return {"id": fn.id, "slug": fn.slug, "paused": True, "cancelled_runs": cancelled}, 200
        return await self._call(request, h)

    async def resume(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            fn = self.ops.function(req.path_params["function_id"])
            await self.ops.resume(fn)
            return {"id": fn.id, "slug": fn.slug, "paused": False}, 200
        return await self._call(request, h)

    async def invoke(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            fn = self.ops.function(req.path_params["function_id"])
            event_id = await self.ops.invoke(fn, body.get("data"), body.get("user"))
            return {"event_id": event_id}, 200
        return await self._call(request, h)

    async def send_events(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            items = body if isinstance(body, list) else [body]
            return {"ids": await self.ops.send_events(items)}, 200
        return await self._call(request, h)

    # -- runs
    async def rerun(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            return {"run_id": await self.ops.rerun(req.path_params["run_id"])}, 200
        return await self._call(request, h)

    async def create_cancellation(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            fn = self.ops.function(str(body.get("function_id") or ""))
            if body.get("app_id") and body["app_id"] not in (fn.app_id, self._app_name(fn.app_id)):
                raise OperationError(f"function {fn.slug!r} does not belong to app {body['app_id']!r}")
            rec = await self.ops.bulk_cancel(fn, str(body.get("name") or ""), ms(body.get("started_after")),
                                             ms(body.get("started_before")), body.get("if") or None)
            return cancellation_json(rec, self.s), 201
        return await self._call(request, h)

    def _app_name(self, app_id: str) -> str | None:
        app = self.s.registry.apps.get(app_id)
        return app.name if app else None

    async def list_cancellations(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            ident = req.query_params.get("function_id")
            fn_id = self.ops.function(ident).id if ident else None
            return [cancellation_json(r, self.s) for r in await self.s.store.list_cancellations(fn_id, 100)], 200
        return await self._call(request, h)

    async def create_replay(self, request: Request) -> Response:
        async def h(req: Request, body: dict[str, Any]) -> tuple[Any, int]:
            fn = self.ops.function(str(body.get("function_id") or ""))
            start, end = ms(body.get("from")), ms(body.get("until")) or self.s.clock.now_ms() + 1
            if start is None:
                raise OperationError("'from' is required (RFC 3339)")
            statuses = [_status(str(s)) for s in body.get("statuses") or []]
            rec = await self.ops.replay(fn, str(body.get("name") or ""), start, end, statuses)
            return replay_json(rec, self.s), 201
        return await self._call(request, h)

    async def list_replays(self, request: Request) -> Response:
        async def h(req: Request, body: Any) -> tuple[Any, int]:
            ident = req.query_params.get("function_id")
            fn_id = self.ops.function(ident).id if ident else None
            return [replay_json(r, self.s) for r in await self.s.store.list_replays(fn_id, 100)], 200
        return await self._call(request, h)
