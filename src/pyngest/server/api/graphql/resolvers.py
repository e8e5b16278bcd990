"""GraphQL at ``/v0/gql`` over graphql-core: objects are dicts whose lazy fields are callables,
resolved by graphql-core's default resolver."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from importlib import resources
from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute,
    parse,
    validate,
)
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol.durations import iso_ms
from pyngest.protocol.ids import is_ulid
from pyngest.server.api.common import BEARER_ENV, bearer_ok, json_response, unauthorized
from pyngest.server.api.envs import env_of, request_env
from pyngest.server.api.graphql.dashboard import (
    ATTEMPT_MARK,
    MAX_COUNT,
    DashboardFields,
    add_attempts,
    attempt_error,
)
from pyngest.server.api.graphql.envs import EnvFields
from pyngest.server.api.graphql.limits import (
    MAX_QUERY_CHARS,
    QueryRefused,
    check_document,
    check_text,
    short,
)
from pyngest.server.api.graphql.webhooks import WebhookFields
from pyngest.server.api.limits import BodyTooLarge, request_body
from pyngest.server.api.manage import Operations
from pyngest.server.environments import EnvError
from pyngest.server.model import Run, RunStatus, StoredEvent
from pyngest.server.registry import Function, normalize_url
from pyngest.server.service import Service
from pyngest.server.store.base import AppRecord, AppUrlRecord, RunQuery
from pyngest.server.traces import build_trace, finalization_span, parse_output_id

_STATUS = {
    RunStatus.QUEUED: "QUEUED", RunStatus.RUNNING: "RUNNING", RunStatus.COMPLETED: "COMPLETED",
    RunStatus.FAILED: "FAILED", RunStatus.CANCELLED: "CANCELLED", RunStatus.SKIPPED: "SKIPPED",
}
_FROM_STATUS = {v: k for k, v in _STATUS.items()}


def _time(value: Any) -> Any:
    if isinstance(value, int):
        return iso_ms(value)
    return value


def load_schema() -> GraphQLSchema:
    sdl = resources.files("pyngest.server.api.graphql").joinpath("schema.graphql").read_text()
    schema = build_schema(sdl)
    time = schema.type_map["Time"]
    # graphql-core 3.3 reads coerce_output_value and ignores serialize (3.2's only name)
    time.serialize = _time  # type: ignore[attr-defined]
    if hasattr(time, "coerce_output_value"):
        time.coerce_output_value = _time
    schema.type_map["StepInfo"].resolve_type = lambda obj, *_: obj.get("__typename")  # type: ignore[attr-defined]
    return schema


class Resolvers:
    def __init__(self, service: Service, ops: Operations | None = None) -> None:
        self.s = service
        self.ops = ops or Operations(service)
        self.dashboard = DashboardFields(self, self.ops)
        self.envs = EnvFields(service)
        self.webhooks = WebhookFields(service)

    # ------------------------------------------------------------------------ objects

    def app(self, app: AppRecord) -> dict[str, Any]:
        fns = [f for f in self.s.registry.functions.values() if f.app_id == app.id]
        rec = next((r for r in self.s.syncer.urls.values() if r.app_id == app.id), None)
        return {
            "id": app.id, "externalID": app.name, "name": app.name, "sdkLanguage": app.sdk_language,
            "sdkVersion": app.sdk_version, "framework": app.framework or None, "url": app.url,
            "checksum": app.checksum, "error": app.error, "functions": lambda *_: [self.function(f) for f in fns],
            "connectionType": "SERVERLESS", "method": "SERVE", "appVersion": app.app_version or None,
            "connected": app.error is None, "functionCount": len(fns),
            "autodiscovered": bool(rec and rec.source == "discovery"), "updatedAt": app.updated_ms or None,
            **self._sync_facts(app, rec),
        }

    def _sync_facts(self, app: AppRecord, rec: AppUrlRecord | None) -> dict[str, Any]:
        """When and how the app last synced (the server's memory of this process; after a
        restart, the stored time of the last sync)."""
        syncer = self.s.syncer
        st = syncer.states.get(normalize_url(app.url)) if app.url else None
        synced = (st.synced_ms if st else None) or (rec.synced_ms if rec else None) or app.updated_ms or None
        polls = self.s.config.poll or (rec is not None and rec.error is not None)
        return {
            "lastSyncedAt": synced, "syncedBy": st.synced_by if st else None,
            "resyncIntervalSeconds": (st.interval_s if st else self.s.config.poll_interval_s) if polls else None,
        }

    def function(self, fn: Function) -> dict[str, Any]:
        triggers = [{"type": "EVENT", "value": t.event, "condition": t.condition.source if t.condition else None}
                    for t in fn.event_triggers]
        triggers += [{"type": "CRON", "value": t.expression, "condition": None} for t in fn.cron_triggers]
        concurrency = fn.config.get("concurrency") or []
        limit = next((int(c.get("limit", 0)) for c in concurrency if c.get("scope", "fn") == "fn" and not c.get("key")), 0)
        return {
            "id": fn.id, "name": fn.name, "slug": fn.slug, "config": orjson.dumps(fn.config).decode(),
            "concurrency": limit, "triggers": triggers, "url": fn.url, "appID": fn.app_id,
            "app": lambda *_: self.app(self.s.registry.apps[fn.app_id]) if fn.app_id in self.s.registry.apps else None,
            "paused": fn.paused,
        }

    def event(self, ev: StoredEvent) -> dict[str, Any]:
        body = ev.body.decode()

        async def runs(*_: Any) -> list[dict[str, Any]]:
            return [self.run_v1(r) for r in await self.s.store.runs_for_event(ev.internal_id)]

        return {
            "skippedFunctions": lambda *_: self.skipped(ev),
            "id": ev.internal_id, "externalID": ev.event_id, "workspace": {"id": "local"}, "name": ev.name,
            "createdAt": ev.received_ms, "payload": orjson.dumps(orjson.loads(ev.body).get("data")).decode(),
            "raw": body, "functionRuns": runs, "totalRuns": lambda *_: _count(runs), "status": None,
            "pendingRuns": None, "schema": None,
        }

    async def skipped(self, ev: StoredEvent) -> list[dict[str, Any]]:
        """The functions the event matched but did not start, and why."""
        out = []
        for fn_id, reason, at_ms in await self.s.store.skips_for_event(ev.internal_id):
            fn = self.s.registry.functions.get(fn_id)
            out.append({"functionID": fn_id, "functionSlug": fn.slug if fn else None, "reason": reason,
                        "skippedAt": at_ms})
        return out

    def event_v2(self, ev: StoredEvent) -> dict[str, Any]:
        async def runs(*_: Any) -> list[dict[str, Any]]:
            return [self.run_v2(r) for r in await self.s.store.runs_for_event(ev.internal_id)]

        body = orjson.loads(ev.body)
        return {
            "id": ev.internal_id, "name": ev.name, "idempotencyKey": ev.event_id, "occurredAt": ev.ts,
            "receivedAt": ev.received_ms, "raw": ev.body.decode(), "version": body.get("v"),
            "source": ev.source or None, "runs": runs, "skippedFunctions": lambda *_: self.skipped(ev),
        }

    def run_v1(self, run: Run) -> dict[str, Any]:
        fn = self.s.registry.functions.get(run.fn_id)
        return {
            "id": run.id, "functionID": run.fn_id, "function": self.function(fn) if fn else None,
            "workspace": {"id": "local"}, "batchID": run.batch_id, "status": _STATUS[run.status],
            "startedAt": run.started_ms, "finishedAt": run.ended_ms,
            "output": run.output.decode() if run.output is not None else None,
            "eventID": run.event_ids[0] if run.event_ids else "", "cron": run.cron,
            "event": lambda *_: self._first_event(run), "events": lambda *_: self._events(run),
        }

    def run_v2(self, run: Run) -> dict[str, Any]:
        fn = self.s.registry.functions.get(run.fn_id)
        app = self.s.registry.apps.get(run.app_id)

        async def trace(info: Any, preview: bool | None = None) -> dict[str, Any]:
            return await self.trace(run, preview=bool(preview))

        return {
            "id": run.id, "appID": run.app_id, "app": self.app(app) if app else None, "functionID": run.fn_id,
            "function": self.function(fn) if fn else None, "traceID": run.id, "queuedAt": run.queued_ms,
            "startedAt": run.started_ms, "endedAt": run.ended_ms, "status": _STATUS[run.status],
            "sourceID": None, "triggerIDs": run.event_ids, "eventName": run.attrs.get("event_name"),
            "isBatch": len(run.event_ids) > 1, "batchCreatedAt": None, "cronSchedule": run.cron,
            "output": run.output.decode() if run.output is not None else None, "trace": trace,
            "hasAI": False,
        }

    async def trace(self, run: Run, *, preview: bool = False) -> dict[str, Any]:
        """The run's trace. ``preview`` is upstream's newer trace shape: it adds, once the run
        has ended, a FINALIZATION span whose ``outputID`` reads the run's output (what the npm
        SDK's test helpers look for)."""
        rows = await self.s.store.history(run.id)
        fn = self.s.registry.functions.get(run.fn_id)
        root = build_trace(run, rows, fn.name if fn else run.attrs.get("fn_slug", ""))
        add_attempts(root, rows)
        if preview and run.ended:
            root["childrenSpans"].append(finalization_span(run))
        spans = [root, *root["childrenSpans"]]
        spans += [a for c in root["childrenSpans"] for a in c["childrenSpans"]]
        for span in spans:
            span.update(appID=run.app_id, functionID=run.fn_id, runID=run.id, traceID=run.id,
                        isUserland=False)
            span.setdefault("stepType", span.get("stepOp") or "")
        return root

    async def _first_event(self, run: Run) -> dict[str, Any] | None:
        evs = await self.s.store.get_events(run.event_ids[:1])
        return self.event(evs[0]) if evs else None

    async def _events(self, run: Run) -> list[dict[str, Any]]:
        return [self.event(e) for e in await self.s.store.get_events(run.event_ids)]

    # -------------------------------------------------------------------------- queries

    def root(self) -> dict[str, Any]:
        return {
            "apps": self.q_apps, "app": self.q_app, "event": self.q_event, "events": self.q_events,
            "eventV2": self.q_event_v2, "functionBySlug": self.q_function_by_slug,
            "functions": self.q_functions, "functionRun": self.q_function_run, "runs": self.q_runs,
            "run": self.q_run, "runTraceSpanOutputByID": self.q_output, "runTrigger": self.q_trigger,
            "runTrace": self.q_trace,
            "cancelRun": self.m_cancel_run, "invokeFunction": self.m_invoke, "createApp": self.m_create_app,
            "deleteAppByName": self.m_delete_app, **self.dashboard.root(), **self.envs.root(),
            **self.webhooks.root(),
        }

    def q_apps(self, info: Any, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # noqa: A002
        if filter and filter.get("method") == "CONNECT":
            return []
        return [self.app(a) for a in sorted(self.s.registry.apps_of(env_of(info)), key=lambda a: a.name)]

    def q_app(self, info: Any, id: str) -> dict[str, Any] | None:  # noqa: A002
        app = self.s.registry.apps.get(id)
        return self.app(app) if app and app.env_id == env_of(info) else None

    async def _event(self, info: Any, event_id: str) -> StoredEvent | None:
        ev = await self.s.store.get_event(event_id)
        return ev if ev is not None and ev.env_id == env_of(info) else None

    async def q_event(self, info: Any, query: dict[str, Any]) -> dict[str, Any] | None:
        ev = await self._event(info, str(query["eventId"]))
        return self.event(ev) if ev else None

    async def q_events(self, info: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
        before = None
        if query.get("lastEventId"):
            last = await self._event(info, str(query["lastEventId"]))
            before = last.seq if last else None
        return [self.event(e) for e in await self.s.store.list_events(None, 50, before, env_id=env_of(info))]

    async def q_event_v2(self, info: Any, id: str) -> dict[str, Any]:  # noqa: A002
        ev = await self._event(info, id)
        if ev is None:
            raise ValueError(f"event {id} not found")
        return self.event_v2(ev)

    def q_function_by_slug(self, info: Any, query: dict[str, Any]) -> dict[str, Any] | None:
        fn = self.s.registry.by_env_slug.get((env_of(info), query["functionSlug"]))
        return self.function(fn) if fn else None

    def q_functions(self, info: Any) -> list[dict[str, Any]]:
        return [self.function(f) for f in sorted(self.s.registry.functions_of(env_of(info)), key=lambda f: f.slug)]

    async def q_function_run(self, info: Any, query: dict[str, Any]) -> dict[str, Any] | None:
        run = await self._load(str(query["functionRunId"]), info)
        return self.run_v1(run) if run else None

    async def q_run(self, info: Any, runID: str) -> dict[str, Any] | None:  # noqa: N803
        run = await self._load(runID, info)
        if run is None:
            return None
        await self._name_events([run])
        return self.run_v2(run)

    async def _name_events(self, runs: list[Run]) -> None:
        """Give listed runs their trigger's name (one indexed lookup for the whole page)."""
        missing = [r for r in runs if r.event_ids and "event_name" not in r.attrs]
        if missing:
            names = await self.s.store.event_names_by_id([r.event_ids[0] for r in missing])
            for r in missing:
                name = names.get(r.event_ids[0])
                if name is not None:
                    r.attrs["event_name"] = name

    async def _load(self, run_id: str, info: Any) -> Run | None:
        if not is_ulid(run_id):
            return None
        run = await self.s.store.load_run(run_id)
        return run if run is not None and run.env_id == env_of(info) else None

    async def q_runs(self, info: Any, first: int, orderBy: list[dict[str, Any]], filter: dict[str, Any],  # noqa: A002, N803
                     after: str | None = None, preview: bool | None = None) -> dict[str, Any]:
        # ``preview`` picks upstream's newer runs store; pyngest has one store: same answer
        statuses = [_FROM_STATUS[s].value for s in filter.get("status") or []]
        query = RunQuery(
            fn_ids=filter.get("functionIDs") or None, app_ids=filter.get("appIDs") or None,
            statuses=statuses or None, from_ms=_ms(filter.get("from")), until_ms=_ms(filter.get("until")),
            before_id=after, limit=min(first, 1000) + 1, env_id=env_of(info),
        )
        cursor: str | None = None
        if (filter.get("query") or "").strip():
            query.limit -= 1
            runs, cursor = await self.ops.search(query, filter["query"])
            more = cursor is not None
        else:
            runs = await self.s.store.list_runs(query)
            more = len(runs) > first
            runs = runs[:first]
            cursor = runs[-1].id if runs else None
        await self._name_events(runs)
        return {
            "edges": [{"node": self.run_v2(r), "cursor": r.id} for r in runs],
            "pageInfo": {"hasNextPage": more, "hasPreviousPage": after is not None,
                         "startCursor": runs[0].id if runs else None, "endCursor": cursor},
            # counted only when asked for: every run the filter (and search) matches, not the page
            "totalCount": (
                lambda info, **_: self.ops.count_search(replace(query, before_id=None), filter["query"], MAX_COUNT)
            ) if (filter.get("query") or "").strip() else (
                lambda info, **_: self.s.store.count_runs(replace(query, before_id=None), MAX_COUNT)),
        }

    async def q_output(self, info: Any, outputID: str) -> dict[str, Any]:  # noqa: N803
        if ATTEMPT_MARK in outputID:  # one failed attempt of a step
            head, _, seq = outputID.rpartition(ATTEMPT_MARK)
            error = attempt_error(await self.s.store.history(parse_output_id(head)[0]), int(seq or 0))
            if error is None:
                raise ValueError(f"no output {outputID!r}")
            return {"data": None, "error": error, "input": None}
        run_id, step_id = parse_output_id(outputID)
        run = await self._load(run_id, info)
        if run is None:
            raise ValueError(f"no output {outputID!r}")
        if step_id is None:
            raw = run.output
            if raw is None:
                return {"data": None, "error": None, "input": None}
            if run.status is RunStatus.FAILED:
                return {"data": None, "error": _error(orjson.loads(raw)), "input": None}
            return {"data": raw.decode(), "error": None, "input": None}
        value = run.steps.get(step_id)
        if value is None:
            raise ValueError(f"no output {outputID!r}")
        parsed = orjson.loads(value)
        if isinstance(parsed, dict) and set(parsed) <= {"data", "error", "input"} and parsed:
            if parsed.get("error") is not None:
                return {"data": None, "error": _error(parsed["error"]), "input": None}
            return {"data": orjson.dumps(parsed.get("data")).decode(), "error": None, "input": None}
        return {"data": value.decode(), "error": None, "input": None}

    async def q_trigger(self, info: Any, runID: str) -> dict[str, Any]:  # noqa: N803
        run = await self._load(runID, info)
        if run is None:
            raise ValueError(f"run {runID} not found")
        first = orjson.loads(run.events[0]) if run.events else {}
        return {
            "eventName": first.get("name"), "IDs": run.event_ids,
            "payloads": [e.decode() for e in run.events], "timestamp": first.get("ts") or run.queued_ms,
            "isBatch": len(run.events) > 1, "batchID": run.batch_id, "cron": run.cron,
        }

    async def q_trace(self, info: Any, runID: str) -> dict[str, Any]:  # noqa: N803
        run = await self._load(runID, info)
        if run is None:
            raise ValueError(f"run {runID} not found")
        return await self.trace(run)

    # ------------------------------------------------------------------------ mutations

    async def m_cancel_run(self, info: Any, runID: str) -> dict[str, Any]:  # noqa: N803
        if await self._load(runID, info) is None:
            raise ValueError(f"run {runID} not found")
        await self.s.executor.control.request_cancel(runID, "cancelled from the dashboard")
        run = await self._load(runID, info)
        assert run is not None
        return self.run_v2(run)

    async def m_invoke(self, info: Any, functionSlug: str, data: Any = None, user: Any = None,  # noqa: N803
                       **_: Any) -> bool:
        fn = self.s.registry.find_function(functionSlug, env_of(info))
        if fn is None:
            raise ValueError(f"could not find function with ID: {functionSlug}")
        await self.ops.invoke(fn, data, user)
        return True

    async def m_create_app(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        app, error = await self.ops.add_app(input["url"])
        if app is None:
            raise ValueError(error or "the app did not register")
        return self.app(app)

    async def m_delete_app(self, info: Any, name: str) -> bool:
        app = self.s.registry.app_by_name(name, env_of(info))
        if app is None:
            return False
        await self.s.syncer.remove(app.url)
        await self.s.registry.delete_app(app.id)
        return True


def _error(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {"message": str(obj), "name": "Error", "stack": None}
    return {"message": str(obj.get("message") or obj.get("error") or ""), "name": obj.get("name"),
            "stack": obj.get("stack"), "cause": obj.get("cause")}


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    from pyngest.protocol.durations import parse_time_ms

    return parse_time_ms(str(value))


async def _count(runs: Any) -> int:
    return len(await runs())


class GraphQLEndpoint:
    def __init__(self, service: Service, ops: Operations | None = None) -> None:
        self.service = service
        self.schema = load_schema()
        self.resolvers = Resolvers(service, ops)

    async def handle(self, request: Request) -> Response:
        if self.service.config.requires_auth and not bearer_ok(request, self.service.config):
            return unauthorized()
        try:
            # room for a query at its longest beside variables as large as an Event API request
            raw = await request_body(request, self.service.config.event_request_limit + 4 * MAX_QUERY_CHARS)
            body = orjson.loads(raw)
        except BodyTooLarge as exc:
            return _errors(str(exc), 413)
        except orjson.JSONDecodeError as exc:
            return _errors(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _errors("expected {\"query\": \"...\", \"variables\": {...}}", 400)
        variables = body.get("variables") or None
        operation = body.get("operationName")
        if (variables is not None and not isinstance(variables, dict)) or not isinstance(operation, (str, type(None))):
            return _errors("'variables' must be an object and 'operationName' a string", 400)
        query: str = body["query"]
        try:
            check_text(query)
            # A long query is parsed off the event loop: other requests keep their turns.
            document = await asyncio.to_thread(self._prepare, query) if len(query) > _INLINE_CHARS \
                else self._prepare(query)
        except QueryRefused as exc:
            return _errors(str(exc), exc.status)
        except GraphQLError as exc:  # a syntax error
            document = [exc]
        if isinstance(document, list):
            return json_response({"data": None, "errors": [_formatted(e) for e in document]})
        try:
            env_id = await request_env(request, self.service)
        except EnvError as exc:
            return _errors(exc.message, exc.status)
        result = execute(self.schema, document, root_value=self.resolvers.root(), context_value={
            "env": env_id, "bearer": request.scope.get(BEARER_ENV)},
                         variable_values=variables, operation_name=operation)
        if isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [_formatted(e) for e in result.errors]
        return json_response(out)

    def _prepare(self, query: str) -> DocumentNode | list[GraphQLError]:
        """Parse and validate ``query``: the document, or the validation errors."""
        document = parse(query)
        check_document(document)
        errors = validate(self.schema, document)
        return errors or document


# Queries longer than this are parsed in a worker thread.
_INLINE_CHARS = 2048


def _formatted(error: GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    formatted["message"] = short(str(formatted.get("message", "")))
    return formatted


def _errors(message: str, status: int) -> Response:
    return json_response({"errors": [{"message": short(message)}]}, status)
