"""A run's trace (root span + one span per step) rebuilt from its history rows.

Span fields follow upstream's ``RunTraceSpan``; the step spans carry the user's step id (or
display name) as ``name``, which is how the SDKs' own test harnesses find a step's output.
"""

from __future__ import annotations

from typing import Any

import orjson

from pyngest.server.model import Run, RunStatus
from pyngest.server.store.base import HistoryRow

_RUN_STATUS = {
    RunStatus.QUEUED: "QUEUED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.COMPLETED: "COMPLETED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "CANCELLED",
    RunStatus.SKIPPED: "CANCELLED",
}

# history kind -> (span status, step op)
_STEP_KINDS: dict[str, tuple[str, str | None]] = {
    "StepPlanned": ("QUEUED", "RUN"),
    "StepCompleted": ("COMPLETED", "RUN"),
    "StepFailed": ("FAILED", "RUN"),
    "StepErrored": ("RUNNING", "RUN"),
    "StepSleeping": ("WAITING", "SLEEP"),
    "StepSlept": ("COMPLETED", "SLEEP"),
    "StepWaiting": ("WAITING", "WAIT_FOR_EVENT"),
    "StepWaitingForSignal": ("WAITING", "WAIT_FOR_EVENT"),
    "StepResumed": ("COMPLETED", "WAIT_FOR_EVENT"),
    "StepSignalled": ("COMPLETED", "WAIT_FOR_EVENT"),
    "StepTimedOut": ("COMPLETED", None),
    "StepInvoking": ("WAITING", "INVOKE"),
    "StepInvoked": ("COMPLETED", "INVOKE"),
    "StepGateway": ("RUNNING", "AI_GATEWAY"),
}


def output_id(run_id: str, step_id: str | None) -> str:
    return f"{run_id}:{step_id or ''}"


def parse_output_id(value: str) -> tuple[str, str | None]:
    run_id, _, step_id = value.partition(":")
    return run_id, (step_id or None)


def _data(row: HistoryRow) -> dict[str, Any]:
    if not row.data:
        return {}
    try:
        value = orjson.loads(row.data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def finalization_span(run: Run) -> dict[str, Any]:
    """The span of an ended run that carries its output (upstream's FINALIZATION step)."""
    at = run.ended_ms or run.queued_ms
    return {
        "spanID": f"{run.id}:finalization", "stepID": None, "name": "Finalization",
        "status": _RUN_STATUS[run.status], "attempts": None, "queuedAt": at, "startedAt": at,
        "endedAt": at, "duration": 0, "outputID": output_id(run.id, None) if run.output is not None else None,
        "stepOp": None, "stepType": "FINALIZATION", "stepInfo": None, "isRoot": False,
        "childrenSpans": [], "parentSpanID": f"{run.id}:", "errors": [],
    }


def build_trace(run: Run, rows: list[HistoryRow], fn_name: str) -> dict[str, Any]:
    spans: dict[str, dict[str, Any]] = {}
    started = run.started_ms
    for row in rows:
        if row.step_id is None or row.step_id == "step" or row.kind.startswith("Function") or row.kind == "CancelRequested":
            continue
        kind = _STEP_KINDS.get(row.kind)
        if kind is None:
            continue
        status, op = kind
        span = spans.get(row.step_id)
        if span is None:
            span = spans[row.step_id] = {
                "spanID": f"{run.id}:{row.step_id}",
                "stepID": row.step_id,
                "name": row.name or row.step_id,
                "status": status,
                "attempts": 0,
                "queuedAt": row.at_ms,
                "startedAt": None,
                "endedAt": None,
                "outputID": None,
                "stepOp": op,
                "stepInfo": None,
                "errors": [],
            }
        if row.name and span["name"] == row.step_id:
            span["name"] = row.name
        data = _data(row)
        span["status"] = status
        if op is not None:
            span["stepOp"] = op
        if row.kind == "StepErrored":
            span["attempts"] += 1
            span["errors"].append(data.get("error"))
            span["startedAt"] = span["startedAt"] or data.get("started_ms")
        elif row.kind in ("StepCompleted", "StepFailed"):
            span["attempts"] += 1
            span["startedAt"] = span["startedAt"] or data.get("started_ms") or row.at_ms
            span["endedAt"] = data.get("ended_ms") or row.at_ms
            span["outputID"] = output_id(run.id, row.step_id)
        elif row.kind == "StepSleeping":
            span["startedAt"] = row.at_ms
            span["stepInfo"] = {"__typename": "SleepStepInfo", "sleepUntil": data.get("until_ms")}
        elif row.kind in ("StepWaiting", "StepWaitingForSignal"):
            span["startedAt"] = row.at_ms
            span["stepInfo"] = {
                "__typename": "WaitForEventStepInfo", "eventName": data.get("event") or data.get("signal"),
                "expression": data.get("if"), "timeout": data.get("expires_ms"), "foundEventID": None,
                "timedOut": None,
            }
        elif row.kind == "StepInvoking":
            span["startedAt"] = row.at_ms
            span["stepInfo"] = {
                "__typename": "InvokeStepInfo", "triggeringEventID": None, "functionID": data.get("function_id"),
                "timeout": data.get("expires_ms"), "returnEventID": None, "runID": None, "timedOut": None,
            }
        elif row.kind in ("StepSlept", "StepResumed", "StepSignalled", "StepInvoked", "StepTimedOut"):
            span["endedAt"] = row.at_ms
            span["attempts"] = max(span["attempts"], 1)
            span["outputID"] = output_id(run.id, row.step_id)
            info = span.get("stepInfo")
            if row.kind == "StepTimedOut":
                if info is not None:
                    info["timedOut"] = True
            elif info is not None and "timedOut" in info:
                info["timedOut"] = False
        elif row.kind == "StepGateway":
            span["startedAt"] = row.at_ms
    children = []
    for span in spans.values():
        span["duration"] = (
            span["endedAt"] - span["startedAt"] if span["endedAt"] and span["startedAt"] else None
        )
        span["isRoot"] = False
        children.append(span)
    root = {
        "spanID": f"{run.id}:",
        "stepID": None,
        "name": fn_name,
        "status": _RUN_STATUS[run.status],
        "attempts": None,
        "queuedAt": run.queued_ms,
        "startedAt": started,
        "endedAt": run.ended_ms,
        "duration": (run.ended_ms - started) if run.ended_ms and started else None,
        "outputID": output_id(run.id, None) if run.ended else None,
        "stepOp": None,
        "stepInfo": None,
        "isRoot": True,
        "childrenSpans": children,
        "errors": [],
    }
    for child in children:
        child["childrenSpans"] = []
        child["parentSpanID"] = root["spanID"]
    root["parentSpanID"] = None
    return root
