"""REST for operations on many runs: pause/resume a function, bulk cancellation, replay, rerun."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms, parse_time_ms
from pyngest.server.api.common import api_error, bearer_ok, json_response, unauthorized
from pyngest.server.operations import OperationError, as_json
from pyngest.server.registry import Function
from pyngest.server.service import Service


class OperationsAPI:
    def __init__(self, service: Service) -> None:
        self.service = service

    def _meta(self) -> dict[str, Any]:
        return {"fetched_at": iso_ms(self.service.clock.now_ms()), "cached_until": None}

    def _function(self, ident: str, app: str | None = None) -> Function | None:
        """A function by UUID, full slug, or (with its app's name) its id within the app."""
        reg = self.service.registry
        fn = reg.find_function(ident)
        if fn is None and app:
            fn = reg.find_function(f"{app}-{ident}")
        return fn

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        if not bearer_ok(request, self.service.config):
            return unauthorized()
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
        fn = self._function(request.path_params["fn"])
        if fn is None:
            return api_error(f"function {request.path_params['fn']} not found", 404)
        op = await self.service.operations.pause_function(fn, cancel_running=bool(body.get("cancel_running")))
        return json_response({"data": {"function_id": fn.id, "slug": fn.slug, "paused": True,
                                       "cancellation": as_json(op) if op else None}, "metadata": self._meta()})

    async def resume(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn = self._function(request.path_params["fn"])
        if fn is None:
            return api_error(f"function {request.path_params['fn']} not found", 404)
        await self.service.operations.resume_function(fn)
        return json_response({"data": {"function_id": fn.id, "slug": fn.slug, "paused": False}, "metadata": self._meta()})

    # --------------------------------------------------------------------- cancellation

    async def create_cancellation(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn_ident = body.get("function_id")
        if not isinstance(fn_ident, str) or not fn_ident:
            return api_error("function_id is required (the function's id, as in your code)", 400)
        fn = self._function(fn_ident, body.get("app_id") if isinstance(body.get("app_id"), str) else None)
        if fn is None:
            return api_error(f"function {fn_ident!r} of app {body.get('app_id')!r} not found", 404)
        bounds = {}
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
            op = await self.service.operations.create_cancellation(
                fn, started_after=bounds["started_after"], started_before=bounds["started_before"],
                expression=expr, name=str(body.get("name") or ""),
            )
        except OperationError as exc:
            return api_error(str(exc), 400)
        out = as_json(op)
        out["function_id"] = fn_ident
        return json_response(out)

    async def list_operations(self, request: Request) -> Response:
        if not bearer_ok(request, self.service.config):
            return unauthorized()
        kind = "cancellation" if request.url.path.startswith("/v1/cancellations") else "replay"
        ident = request.query_params.get("function_id")
        fn = self._function(ident, request.query_params.get("app_id")) if ident else None
        if ident and fn is None:
            return api_error(f"function {ident!r} not found", 404)
        ops = await self.service.store.list_operations(fn.id if fn else None, kind, 100)
        return json_response({"data": [as_json(o) for o in ops], "metadata": self._meta()})

    async def get_operation(self, request: Request) -> Response:
        if not bearer_ok(request, self.service.config):
            return unauthorized()
        op = await self.service.store.get_operation(request.path_params["op_id"])
        if op is None:
            return api_error(f"{request.path_params['op_id']} not found", 404)
        return json_response({"data": as_json(op), "metadata": self._meta()})

    async def stop_operation(self, request: Request) -> Response:
        if not bearer_ok(request, self.service.config):
            return unauthorized()
        op = await self.service.operations.stop(request.path_params["op_id"])
        if op is None:
            return api_error(f"{request.path_params['op_id']} not found", 404)
        return json_response({"data": as_json(op), "metadata": self._meta()})

    # --------------------------------------------------------------------------- replay

    async def create_replay(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        fn = self._function(str(body.get("function_id") or ""), body.get("app_id") if isinstance(body.get("app_id"), str) else None)
        if fn is None:
            return api_error(f"function {body.get('function_id')!r} not found", 404)
        start, end = parse_time_ms(str(body.get("from") or "")), parse_time_ms(str(body.get("to") or ""))
        if start is None or end is None:
            return api_error("'from' and 'to' must be ISO-8601 timestamps", 400)
        statuses = body.get("statuses")
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            return api_error("'statuses' must be a list like [\"Failed\", \"Cancelled\", \"Skipped\"]", 400)
        try:
            op = await self.service.operations.create_replay(fn, from_ms=start, until_ms=end, statuses=statuses,
                                                             name=str(body.get("name") or ""))
        except OperationError as exc:
            return api_error(str(exc), 400)
        return json_response({"data": as_json(op), "metadata": self._meta()})

    async def rerun(self, request: Request) -> Response:
        if not bearer_ok(request, self.service.config):
            return unauthorized()
        try:
            run_id = await self.service.operations.rerun(request.path_params["run_id"])
        except OperationError as exc:
            return api_error(str(exc), 404 if "not found" in str(exc) else 400)
        return json_response({"data": {"run_id": run_id}, "metadata": self._meta()})
