"""REST API v1: events and runs, as the docs show (examples__fetch-run-status-and-output)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms
from pyngest.protocol.ids import is_ulid
from pyngest.protocol.sync import app_url_problem
from pyngest.server.api.common import api_error, bearer_ok, json_response, unauthorized
from pyngest.server.api.envs import request_env
from pyngest.server.environments import EnvError
from pyngest.server.model import Run, StoredEvent
from pyngest.server.service import Service
from pyngest.server.store.base import RunQuery

MAX_LIMIT = 1000


def run_json(run: Run, service: Service) -> dict[str, Any]:
    fn = service.registry.functions.get(run.fn_id)
    out: dict[str, Any] = {
        "run_id": run.id,
        "run_started_at": iso_ms(run.started_ms) if run.started_ms else None,
        "function_id": run.fn_id,
        "function_slug": fn.slug if fn else run.attrs.get("fn_slug"),
        "function_version": run.fn_version,
        "environment_id": run.env_id,
        "event_id": run.event_ids[0] if run.event_ids else None,
        "status": run.status.value,
        "queued_at": iso_ms(run.queued_ms),
        "ended_at": iso_ms(run.ended_ms) if run.ended_ms else None,
        "output": orjson.loads(run.output) if run.output is not None else None,
    }
    if run.batch_id:
        out["batch_id"] = run.batch_id
    if run.original_run_id:
        out["original_run_id"] = run.original_run_id
    if run.cron:
        out["cron"] = run.cron
    return out


def event_json(ev: StoredEvent) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(ev.body)
    body["internal_id"] = ev.internal_id
    body["received_at"] = iso_ms(ev.received_ms)
    return body


class RestAPI:
    def __init__(self, service: Service) -> None:
        self.service = service

    def _meta(self) -> dict[str, Any]:
        return {"fetched_at": iso_ms(self.service.clock.now_ms()), "cached_until": None}

    def _auth(self, request: Request) -> Response | None:
        return None if bearer_ok(request, self.service.config) else unauthorized()

    async def _env(self, request: Request) -> str | Response:
        """The environment the caller's key (or x-inngest-env) selects, or the refusal."""
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            return await request_env(request, self.service)
        except EnvError as exc:
            return api_error(exc.message, exc.status)

    async def list_events(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        q = request.query_params
        try:
            limit = min(int(q.get("limit", "50")), MAX_LIMIT)
            before = int(q["cursor"]) if q.get("cursor") else None
        except ValueError:
            return api_error("limit and cursor must be integers", 400)
        events = await self.service.store.list_events(q.get("name") or None, limit, before, env_id=env)
        body: dict[str, Any] = {"data": [event_json(e) for e in events], "metadata": self._meta()}
        if len(events) == limit and events:
            body["cursor"] = str(events[-1].seq)
        return json_response(body)

    async def get_event(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        ev = await self.service.store.get_event(request.path_params["event_id"])
        if ev is None or ev.env_id != env:
            return api_error(f"event {request.path_params['event_id']} not found", 404)
        return json_response({"data": event_json(ev), "metadata": self._meta()})

    async def event_runs(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        runs = [r for r in await self.service.store.runs_for_event(request.path_params["event_id"]) if r.env_id == env]
        return json_response({"data": [run_json(r, self.service) for r in runs], "metadata": self._meta()})

    async def event_skips(self, request: Request) -> Response:
        """The functions this event did not start, and why (rate limited, paused, singleton)."""
        if (denied := self._auth(request)) is not None:
            return denied
        rows = await self.service.store.skips_for_event(request.path_params["event_id"])
        out = []
        for fn_id, reason, at_ms in rows:
            fn = self.service.registry.functions.get(fn_id)
            out.append({"function_id": fn_id, "function_slug": fn.slug if fn else None, "reason": reason,
                        "skipped_at": iso_ms(at_ms)})
        return json_response({"data": out, "metadata": self._meta()})

    async def get_run(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        if (bad := _bad_run_id(request.path_params["run_id"])) is not None:
            return bad
        run = await self.service.store.load_run(request.path_params["run_id"])
        if run is None or run.env_id != env:
            return api_error(f"run {request.path_params['run_id']} not found", 404)
        return json_response({"data": run_json(run, self.service), "metadata": self._meta()})

    async def cancel_run(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        run_id = request.path_params["run_id"]
        if (bad := _bad_run_id(run_id)) is not None:
            return bad
        run = await self.service.store.load_run(run_id)
        if run is None or run.env_id != env:
            return api_error(f"run {run_id} not found", 404)
        await self.service.executor.control.request_cancel(run_id, "cancelled through the API")
        run = await self.service.store.load_run(run_id)
        assert run is not None
        if request.url.path.startswith("/v0/"):
            return Response(status_code=204)
        return json_response({"data": run_json(run, self.service), "metadata": self._meta()})

    async def list_runs(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        q = request.query_params
        try:
            limit = min(int(q.get("limit", "50")), MAX_LIMIT)
        except ValueError:
            return api_error("limit must be an integer", 400)
        query = RunQuery(
            fn_ids=q.getlist("function_id") or None,
            statuses=q.getlist("status") or None,
            before_id=q.get("cursor") or None,
            limit=limit,
            env_id=env,
        )
        runs = await self.service.store.list_runs(query)
        body: dict[str, Any] = {"data": [run_json(r, self.service) for r in runs], "metadata": self._meta()}
        if len(runs) == limit and runs:
            body["cursor"] = runs[-1].id
        return json_response(body)

    async def app_functions(self, request: Request) -> Response:
        if isinstance(env := await self._env(request), Response):
            return env
        reg = self.service.registry
        app = reg.app_by_name(request.path_params["app_name"], env)
        if app is None:
            return api_error(f"app {request.path_params['app_name']} not found", 404)
        fns = [f for f in reg.functions.values() if f.app_id == app.id]
        return json_response({
            "data": [{"id": f.id, "slug": f.slug, "name": f.name, "config": f.config} for f in fns],
            "metadata": self._meta(),
        })

    async def add_app(self, request: Request) -> Response:
        """Add an app URL and sync it (what the dashboard's "sync new app" does)."""
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        url = body.get("url") if isinstance(body, dict) else None
        problem = app_url_problem(url) if isinstance(url, str) else "is missing"
        if problem is not None or not isinstance(url, str):
            return api_error(f"the app URL {problem}: send {{\"url\": \"http(s)://host:port/api/inngest\"}}, "
                             "the app's serve URL", 400)
        error = await self.service.syncer.add(url, source="api")
        app = self.service.registry.app_by_url(url)
        status = 200 if error is None else 502
        return json_response({"data": {"url": url, "error": error, "app_id": app.id if app else None}}, status)


def _bad_run_id(run_id: str) -> Response | None:
    """400 for what cannot be a run id at all (as upstream), so a typo is not reported as a
    run that does not exist."""
    if is_ulid(run_id):
        return None
    return api_error(f"invalid run id {run_id[:64]!r}: a run id is a 26-character ULID, e.g. 01HXYZ...", 400)
