"""GraphQL fields the dashboard adds to upstream's dev-server schema: aggregates for charts and
lists, event names, app URLs, and the management mutations (over :mod:`api.manage`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from pyngest.protocol.durations import parse_time_ms
from pyngest.protocol.events import is_internal
from pyngest.server.api.envs import env_of
from pyngest.server.api.manage import EventWindow, OperationError, Operations
from pyngest.server.model import RunStatus
from pyngest.server.store.base import HistoryRow, OperationRecord, RunQuery

if TYPE_CHECKING:
    from pyngest.server.api.graphql.resolvers import Resolvers

STATUS_NAMES = {s: s.value.upper() for s in RunStatus}
FROM_NAME = {v: k for k, v in STATUS_NAMES.items()}
MAX_BUCKETS = 400
MAX_COUNT = 1_000_000  # totalCount of runs and events stops counting here
ATTEMPT_MARK = "#h"  # output ids of a failed attempt: "<run>:<step>#h<history seq>"


def ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    parsed = parse_time_ms(str(value))
    if parsed is None:
        raise OperationError(f"not a time: {value!r} (use RFC 3339, e.g. 2025-01-31T12:00:00Z)")
    return parsed


def stats(fn_id: str, counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"functionID": fn_id}
    for status in RunStatus:
        out[status.value.lower()] = counts.get(status.value, 0)
    total = sum(counts.values())
    ended = out["completed"] + out["failed"] + out["cancelled"]
    out["total"] = total
    out["failureRate"] = round(out["failed"] / ended, 4) if ended else 0.0
    return out


def cancellation(op: OperationRecord) -> dict[str, Any]:
    spec = op.spec
    return {"id": op.id, "functionID": op.fn_id, "name": op.name, "queuedAfter": spec.get("from_ms"),
            "queuedBefore": spec.get("until_ms"), "expression": spec.get("if"), "createdAt": op.created_ms,
            "matched": max(op.total, op.done), "cancelled": op.done, "finishedAt": op.ended_ms,
            "status": op.status.upper()}


def replay(op: OperationRecord) -> dict[str, Any]:
    spec = op.spec
    return {"id": op.id, "functionID": op.fn_id, "name": op.name, "fromRange": spec["from_ms"],
            "toRange": spec["until_ms"], "statuses": [STATUS_NAMES[RunStatus(s)] for s in spec["statuses"]],
            "createdAt": op.created_ms, "total": max(op.total, op.done), "scheduled": op.done,
            "finishedAt": op.ended_ms, "status": op.status.upper()}


def add_attempts(root: dict[str, Any], rows: list[HistoryRow]) -> None:
    """Give each step span one child per attempt when it was retried (upstream draws retries as
    children), and add the run's failed requests that no step owns (an error before any step
    ran) as spans of their own, so the timeline shows every attempt with its error and timing."""
    by_step: dict[str, list[HistoryRow]] = {}
    loose: list[HistoryRow] = []
    for row in rows:
        if row.kind in ("StepErrored", "StepCompleted", "StepFailed"):
            by_step.setdefault(row.step_id or "", []).append(row)
        elif row.kind in ("FunctionErrored", "FunctionErroredFinal"):
            loose.append(row)
    run_id = root["spanID"].rstrip(":")
    for span in root["childrenSpans"]:
        attempts = by_step.get(span.get("stepID") or "", [])
        if len(attempts) > 1 or any(r.kind == "StepErrored" for r in attempts):
            span["childrenSpans"] = [_attempt(run_id, span["spanID"], span.get("stepID") or "", n, r)
                                     for n, r in enumerate(attempts)]
    if loose:
        root["childrenSpans"].append(_request_span(run_id, root, loose))


def _request_span(run_id: str, root: dict[str, Any], rows: list[HistoryRow]) -> dict[str, Any]:
    """The function's own request when it failed without a step to blame (an error before any
    step ran, or in the code between steps): one span, each failed request an attempt of it."""
    spec = f"{root['spanID']}request"
    attempts = [_attempt(run_id, spec, row.step_id or "step", n, row) for n, row in enumerate(rows)]
    final = rows[-1].kind == "FunctionErroredFinal"
    return {
        "spanID": spec, "parentSpanID": root["spanID"], "name": "Function request",
        "status": "FAILED" if final else "RUNNING", "attempts": len(attempts),
        "queuedAt": attempts[0]["queuedAt"], "startedAt": attempts[0]["startedAt"],
        "endedAt": attempts[-1]["endedAt"] if final else None,
        "duration": attempts[-1]["endedAt"] - attempts[0]["startedAt"] if final else None,
        "outputID": attempts[-1]["outputID"], "stepOp": "RUN", "stepID": "step", "stepInfo": None,
        "isRoot": False, "childrenSpans": attempts, "errors": [],
    }


def _attempt(run_id: str, parent: str, step_id: str, n: int, row: HistoryRow) -> dict[str, Any]:
    data = orjson.loads(row.data) if row.data else {}
    started = data.get("started_ms") or row.at_ms
    ended = data.get("ended_ms") or row.at_ms
    ok = row.kind == "StepCompleted"
    return {
        "spanID": f"{parent}/{row.seq}", "parentSpanID": parent, "name": f"Attempt {n + 1}",
        "status": "COMPLETED" if ok else "FAILED", "attempts": n + 1, "queuedAt": started,
        "startedAt": started, "endedAt": ended, "duration": ended - started,
        "outputID": f"{run_id}:{step_id}" if ok else f"{run_id}:{step_id}{ATTEMPT_MARK}{row.seq}",
        "stepOp": "RUN", "stepID": step_id, "stepInfo": None, "isRoot": False, "childrenSpans": [],
        "errors": [],
    }


def attempt_error(rows: list[HistoryRow], seq: int) -> dict[str, Any] | None:
    for row in rows:
        if row.seq == seq and row.data:
            error = orjson.loads(row.data).get("error")
            if isinstance(error, dict):
                return {"message": str(error.get("message") or error.get("error") or ""),
                        "name": error.get("name"), "stack": error.get("stack")}
            return {"message": str(error), "name": "Error", "stack": None}
    return None


class DashboardFields:
    def __init__(self, base: Resolvers, ops: Operations) -> None:
        self.base = base
        self.s = base.s
        self.ops = ops

    def root(self) -> dict[str, Any]:
        return {
            "appURLs": self.q_app_urls, "functionStats": self.q_function_stats,
            "functionMetrics": self.q_function_metrics, "eventNames": self.q_event_names,
            "eventThroughput": self.q_event_throughput, "eventsV2": self.q_events_v2,
            "cancellations": self.q_cancellations, "cancellationRunCount": self.q_cancellation_count,
            "replays": self.q_replays, "replayRunCount": self.q_replay_count,
            "updateApp": self.m_update_app, "deleteApp": self.m_delete_app, "rerun": self.m_rerun,
            "syncApp": self.m_sync_app, "pauseFunction": self.m_pause, "unpauseFunction": self.m_unpause,
            "createCancellation": self.m_cancellation, "createFunctionReplay": self.m_replay,
            "sendEvents": self.m_send_events,
        }

    def _range(self, from_: Any, until: Any, *, buckets: int | None = None) -> tuple[int, int]:
        """[start, end) in ms. For charts, end is the last bucket's end, and the store counts the
        millisecond at the very end into the last bucket, so "until now" includes now."""
        start = ms(from_) or 0
        end = ms(until) or self.s.clock.now_ms() + (0 if buckets else 1)
        if end <= start:
            raise OperationError("'until' must be after 'from'")
        return start, end

    # --------------------------------------------------------------------------- queries

    def q_app_urls(self, info: Any) -> list[dict[str, Any]]:
        return [{"url": r.url, "source": r.source, "error": r.error, "appID": r.app_id,
                 "createdAt": r.created_ms, "syncedAt": r.synced_ms}
                for r in sorted(self.s.syncer.urls.values(), key=lambda r: r.url)]

    async def q_function_stats(self, info: Any, **args: Any) -> list[dict[str, Any]]:
        start, end = self._range(args["from"], args.get("until"))
        counts: dict[str, dict[str, int]] = {}
        for fn_id, status, n in await self.s.store.run_counts(start, end):
            counts.setdefault(fn_id, {})[status] = n
        return [stats(fn.id, counts.get(fn.id, {})) for fn in self.s.registry.functions_of(env_of(info))]

    async def q_function_metrics(self, info: Any, **args: Any) -> dict[str, Any]:
        buckets = max(1, min(int(args.get("buckets") or 48), MAX_BUCKETS))
        start, end = self._range(args["from"], args.get("until"), buckets=buckets)
        bucket = max(1, -(-(end - start) // buckets))
        fn_ids = None
        if args.get("functionID"):
            fn_ids = [self.ops.function(args["functionID"], env_of(info)).id]
        query = RunQuery(fn_ids=fn_ids, app_ids=[args["appID"]] if args.get("appID") else None,
                         from_ms=start, until_ms=start + bucket * buckets, env_id=env_of(info))
        series = await self.s.store.run_series(query, bucket, buckets)
        steps = await self.s.store.step_series(query, bucket, buckets)
        totals: dict[str, int] = {}
        for fn_id, status, n in await self.s.store.run_counts(start, start + bucket * buckets + 1):
            wanted_fn = fn_ids is None or fn_id in fn_ids
            if wanted_fn and (query.app_ids is None or self._app_of(fn_id) in query.app_ids):
                totals[status] = totals.get(status, 0) + n
        zero = [0] * buckets
        return {
            "from": start, "until": start + bucket * buckets, "bucketMS": bucket,
            "status": stats(fn_ids[0] if fn_ids else "", totals),
            "runs": {"queued": series.queued, "started": series.started, "backlog": series.backlog,
                     "completed": series.ended.get("Completed", zero), "failed": series.ended.get("Failed", zero),
                     "cancelled": series.ended.get("Cancelled", zero)},
            "steps": steps,
        }

    def _app_of(self, fn_id: str) -> str | None:
        fn = self.s.registry.functions.get(fn_id)
        return fn.app_id if fn else None

    async def q_event_names(self, info: Any, **args: Any) -> list[dict[str, Any]]:
        start, end = self._range(args["from"], args.get("until"))
        internal = bool(args.get("includeInternalEvents"))
        out = []
        for name, volume, last in await self.s.store.event_names(start, end, env_of(info)):
            if is_internal(name) and not internal:
                continue
            fns = self.s.registry.triggered_by({"name": name, "data": {}}, env_of(info))
            fns += [f for f in self.s.registry.functions_of(env_of(info)) if f not in fns and any(
                t.event == name for t in f.event_triggers)]
            out.append({"name": name, "volume": volume, "lastReceivedAt": last,
                        "functions": [self.base.function(f) for f in fns]})
        return out

    async def q_event_throughput(self, info: Any, **args: Any) -> dict[str, Any]:
        buckets = max(1, min(int(args.get("buckets") or 48), MAX_BUCKETS))
        start, end = self._range(args["from"], args.get("until"), buckets=buckets)
        bucket = max(1, -(-(end - start) // buckets))
        counts = await self.s.store.event_series(args["name"], start, bucket, buckets, env_of(info))
        return {"from": start, "bucketMS": bucket, "counts": counts}

    async def q_events_v2(self, info: Any, first: int, filter: dict[str, Any], after: str | None = None  # noqa: A002
                          ) -> dict[str, Any]:
        names = filter.get("eventNames") or [None]
        start, end = self._range(filter["from"], filter.get("until"))
        before = int(after) if after and after.isdigit() else None
        first = max(1, min(first, 500))
        internal = bool(filter.get("includeInternalEvents"))
        if (filter.get("query") or "").strip():
            return await self._search_events(first, filter, after)
        events = []
        for name in names:
            events += await self.s.store.list_events(name, first + 1, before, start, end, internal=internal,
                                                     env_id=env_of(info))
        events.sort(key=lambda e: -e.seq)
        more = len(events) > first
        events = events[:first]
        return {
            "edges": [{"node": self.base.event_v2(e), "cursor": str(e.seq)} for e in events],
            "pageInfo": {"hasNextPage": more, "hasPreviousPage": after is not None,
                         "startCursor": str(events[0].seq) if events else None,
                         "endCursor": str(events[-1].seq) if events else None},
            # counted only when asked for: every event the filter matches, not the page
            "totalCount": lambda info, **_: self.s.store.count_events(
                [n for n in names if n] or None, start, end, internal=internal, cap=MAX_COUNT, env_id=env_of(info)),
        }

    async def _search_events(self, first: int, filter: dict[str, Any], after: str | None  # noqa: A002
                             ) -> dict[str, Any]:
        """eventsV2 with a search expression: the page of matches, and the count of them all."""
        start, end = self._range(filter["from"], filter.get("until"))
        window = EventWindow(filter.get("eventNames") or None, start, end, bool(filter.get("includeInternalEvents")),
                             int(after) if after and after.isdigit() else None)
        events, cursor = await self.ops.search_events(window, first, filter["query"])
        return {
            "edges": [{"node": self.base.event_v2(e), "cursor": str(e.seq)} for e in events],
            "pageInfo": {"hasNextPage": cursor is not None, "hasPreviousPage": after is not None,
                         "startCursor": str(events[0].seq) if events else None,
                         "endCursor": str(cursor) if cursor is not None else (
                             str(events[-1].seq) if events else None)},
            "totalCount": lambda info, **_: self.ops.count_event_search(
                replace(window, before_seq=None), filter["query"], MAX_COUNT),
        }

    async def q_cancellations(self, info: Any, functionID: str | None = None) -> list[dict[str, Any]]:  # noqa: N803
        fn_id = self.ops.function(functionID, env_of(info)).id if functionID else None
        return [cancellation(r) for r in await self.s.store.list_operations(fn_id, "cancellation", 100)]

    async def q_cancellation_count(self, info: Any, functionID: str, **args: Any) -> int:  # noqa: N803
        fn = self.ops.function(functionID, env_of(info))
        return await self.ops.count_cancellable(fn, ms(args.get("queuedAfter")), ms(args.get("queuedBefore")),
                                                args.get("expression"))

    async def q_replays(self, info: Any, functionID: str | None = None) -> list[dict[str, Any]]:  # noqa: N803
        fn_id = self.ops.function(functionID, env_of(info)).id if functionID else None
        return [replay(r) for r in await self.s.store.list_operations(fn_id, "replay", 100)]

    async def q_replay_count(self, info: Any, functionID: str, fromRange: Any, toRange: Any,  # noqa: N803
                             statuses: list[str]) -> int:
        fn = self.ops.function(functionID, env_of(info))
        start, end = self._range(fromRange, toRange)
        return await self.ops.count_replayable(fn, start, end, [FROM_NAME[s].value for s in statuses])

    # ------------------------------------------------------------------------- mutations

    async def m_update_app(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        app, error = await self.ops.update_app(input["id"], input["url"])
        if error is not None:
            raise OperationError(error)
        return self.base.app(app)

    async def m_delete_app(self, info: Any, id: str) -> str:  # noqa: A002
        return (await self.ops.delete_app(id)).id

    async def m_sync_app(self, info: Any, id: str) -> dict[str, Any]:  # noqa: A002
        app, _ = await self.ops.resync_app(id)
        return self.base.app(app)  # a failed sync shows in the app's "error"

    async def m_rerun(self, info: Any, runID: str, fromStep: Any = None, **_debug: Any) -> str:  # noqa: N803
        # debugRunID / debugSessionID tag upstream's debugger sessions, which pyngest has not
        if fromStep:
            raise OperationError("rerunning from a step is not supported yet: rerun the whole run")
        return await self.ops.rerun(runID)

    async def m_pause(self, info: Any, fnID: str, cancelRunning: bool = False) -> dict[str, Any]:  # noqa: N803
        fn = self.ops.function(fnID, env_of(info))
        await self.ops.pause(fn, cancel_running=bool(cancelRunning))
        return self.base.function(fn)

    async def m_unpause(self, info: Any, fnID: str) -> dict[str, Any]:  # noqa: N803
        fn = self.ops.function(fnID, env_of(info))
        await self.ops.resume(fn)
        return self.base.function(fn)

    async def m_cancellation(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        fn = self.ops.function(input["functionID"], env_of(info))
        rec = await self.ops.bulk_cancel(fn, input.get("name") or "", ms(input.get("queuedAfter")),
                                         ms(input.get("queuedBefore")), input.get("expression"))
        return cancellation(rec)

    async def m_replay(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        fn = self.ops.function(input["functionID"], env_of(info))
        start, end = self._range(input["fromRange"], input["toRange"])
        rec = await self.ops.replay(fn, input.get("name") or "", start, end,
                                    [FROM_NAME[s].value for s in input["statuses"]])
        return replay(rec)

    async def m_send_events(self, info: Any, events: list[Any]) -> list[str]:
        return await self.ops.send_events(list(events), env_of(info))
