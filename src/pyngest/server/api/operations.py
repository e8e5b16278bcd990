"""REST for operations on many runs: pause/resume a function, bulk cancellation, replay, rerun."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms, parse_time_ms
from pyngest.protocol.ids import is_ulid
from pyngest.server.api.common import api_error, bearer_ok, json_response, unauthorized
from pyngest.server.api.envs import request_env
from pyngest.server.api.manage import OperationError as ManageError
from pyngest.server.api.manage import Operations
from pyngest.server.environments import EnvError
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.operations import OperationError, as_json, status_name
from pyngest.server.registry import Function
from pyngest.server.service import Service
from pyngest.server.store.base import OperationRecord


class OperationsAPI:
    """REST over the server's operations; creation goes through the dashboard's layer, which
    adds the preview counts (how many runs a cancellation or replay will touch)."""

    def __init__(self, service: Service, manage: Operations) -> None:
        self.service = service
        self.manage = manage

    def _json(self, op: OperationRecord) -> dict[str, Any]:
        fn = self.service.registry.functions.get(op.fn_id)
        return as_json(op, fn.slug if fn else None)

    def _meta(self) -> dict[str, Any]:
        return {"fetched_at": iso_ms(self.service.clock.now_ms()), "cached_until": None}

    def _function(self, request: Request, ident: str, app: str | None = None) -> Function | None:
        """A function of the request's environment by UUID, full slug, or (with its app's name) its
        id within the app."""
        reg, env = self.service.registry, request.state.env
        fn = reg.find_function(ident, env)
        if fn is None and app:
            fn = reg.find_function(f"{app}-{ident}", env)
        return fn

    async def _authed(self, request: Request) -> Response | None:
        """The refusal, or None with the request's environment in ``request.state.env``."""
        if not bearer_ok(request, self.service.config):
            return unauthorized()
        try:
            request.state.env = await request_env(request, self.service)
        except EnvError as exc:
            return api_error(exc.message, exc.status)
        return None

    async def _op(self, request: Request) -> OperationRecord | None:
        """The operation the path names, if it is of a function of the request's environment."""
        op = await self.service.store.get_operation(request.path_params["op_id"])
        fn = self.service.registry.functions.get(op.fn_id) if op is not None else None
        return op if op is not None and (fn.env_id if fn else DEFAULT_ENV) == request.state.env else None

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        if (denied := await self._authed(request)) is not None:
            return denied
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return api_error(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict):
            return api_error("the body must be a JSON object", 400)
        return body

    # ------------------------------------------------------------------------- pausing

    async def pause(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn = self._function(request, request.path_params["function_id"])
        if fn is None:
            return api_error(f"function {request.path_params['function_id']} not found", 404)
        op = await self.service.operations.pause_function(fn, cancel_running=bool(body.get("cancel_running")))
        return json_response({"data": {"id": fn.id, "slug": fn.slug, "paused": True,
                                       "cancellation": self._json(op) if op else None}, "metadata": self._meta()})

    async def resume(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn = self._function(request, request.path_params["function_id"])
        if fn is None:
            return api_error(f"function {request.path_params['function_id']} not found", 404)
        await self.service.operations.resume_function(fn)
        return json_response({"data": {"id": fn.id, "slug": fn.slug, "paused": False}, "metadata": self._meta()})

    # --------------------------------------------------------------------- cancellation

    async def create_cancellation(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn_ident = body.get("function_id")
        if not isinstance(fn_ident, str) or not fn_ident:
            return api_error("function_id is required (the function's id, as in your code)", 400)
        app_name = body.get("app_id") if isinstance(body.get("app_id"), str) else None
        fn = self._function(request, fn_ident, app_name)
        if fn is None:
            return api_error(f"function {fn_ident!r} of app {app_name!r} not found", 404)
        app = self.service.registry.apps.get(fn.app_id)
        if app_name and app_name not in (fn.app_id, app.name if app else None):
            return api_error(f"function {fn.slug!r} does not belong to app {app_name!r}", 400)
        bounds: dict[str, int | None] = {}
        for name in ("started_after", "started_before"):
            value = body.get(name)
            if value is None:
                bounds[name] = None
                continue
            ms = parse_time_ms(str(value))
            if ms is None:
                return api_error(f"{name} must be an ISO-8601 timestamp, like 2024-01-21T18:23:12.000Z", 400)
            bounds[name] = ms
        expr = body.get("if")
        if expr is not None and not isinstance(expr, str):
            return api_error("'if' must be an expression string", 400)
        try:
            op = await self.manage.bulk_cancel(fn, str(body.get("name") or ""), bounds["started_after"],
                                               bounds["started_before"], expr)
        except (OperationError, ManageError) as exc:
            return api_error(str(exc), 400)
        out = self._json(op)
        out["function_id"] = fn_ident  # echoed as sent, as the guide shows
        return json_response(out, 201)

    async def list_operations(self, request: Request) -> Response:
        if (denied := await self._authed(request)) is not None:
            return denied
        kind = "cancellation" if request.url.path.startswith("/v1/cancellations") else "replay"
        ident = request.query_params.get("function_id")
        fn = self._function(request, ident, request.query_params.get("app_id")) if ident else None
        if ident and fn is None:
            return api_error(f"function {ident!r} not found", 404)
        ops = await self.service.store.list_operations(fn.id if fn else None, kind, 100)
        env_fns = {f.id for f in self.service.registry.functions_of(request.state.env)}
        ops = [o for o in ops if o.fn_id in env_fns]
        return json_response({"data": [self._json(o) for o in ops], "metadata": self._meta()})

    async def get_operation(self, request: Request) -> Response:
        if (denied := await self._authed(request)) is not None:
            return denied
        op = await self._op(request)
        if op is None:
            return api_error(f"{request.path_params['op_id']} not found", 404)
        return json_response({"data": self._json(op), "metadata": self._meta()})

    async def stop_operation(self, request: Request) -> Response:
        if (denied := await self._authed(request)) is not None:
            return denied
        if await self._op(request) is None:
            return api_error(f"{request.path_params['op_id']} not found", 404)
        op = await self.service.operations.stop(request.path_params["op_id"])
        if op is None:
            return api_error(f"{request.path_params['op_id']} not found", 404)
        return json_response({"data": self._json(op), "metadata": self._meta()})

    # --------------------------------------------------------------------------- replay

    async def create_replay(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn = self._function(request, str(body.get("function_id") or ""), body.get("app_id") if isinstance(body.get("app_id"), str) else None)
        if fn is None:
            return api_error(f"function {body.get('function_id')!r} not found", 404)
        start = parse_time_ms(str(body.get("from") or ""))
        until = body.get("until") or body.get("to")
        end = parse_time_ms(str(until)) if until else self.service.clock.now_ms() + 1
        if start is None or end is None:
            return api_error("'from' (and 'until', default now) must be ISO-8601 timestamps", 400)
        statuses = body.get("statuses")
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            return api_error("'statuses' must be a list like [\"Failed\", \"Cancelled\", \"Skipped\"]", 400)
        try:
            op = await self.manage.replay(fn, str(body.get("name") or ""), start, end,
                                          [status_name(s) for s in statuses])
        except (OperationError, ManageError) as exc:
            return api_error(str(exc), 400)
        return json_response({"data": self._json(op), "metadata": self._meta()}, 201)

    async def rerun(self, request: Request) -> Response:
        if (denied := await self._authed(request)) is not None:
            return denied
        run = await self.service.store.load_run(request.path_params["run_id"]) \
            if is_ulid(request.path_params["run_id"]) else None
        if run is not None and run.env_id != request.state.env:
            return api_error(f"run {request.path_params['run_id']} not found", 404)
        try:
            run_id = await self.manage.rerun(request.path_params["run_id"])
        except (OperationError, ManageError) as exc:
            return api_error(str(exc), 404 if "not found" in str(exc) else 400)
        return json_response({"data": {"run_id": run_id}, "metadata": self._meta()})
