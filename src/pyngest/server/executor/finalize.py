"""Ending a run: its final status and output, clean-up, and the system events (PROTOCOL.md §5.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.events import FN_CANCELLED, FN_FAILED, FN_FINISHED, INTERNAL_DATA_KEY
from pyngest.protocol.ids import new_ulid
from pyngest.server.events import enqueue_events, stored
from pyngest.server.model import (
    AddHistory,
    Batch,
    DeleteFlow,
    DeleteRunJobs,
    DeleteRunPauses,
    Run,
    RunStatus,
    UpdateRun,
)

_HISTORY_KIND = {
    RunStatus.COMPLETED: "FunctionCompleted",
    RunStatus.FAILED: "FunctionFailed",
    RunStatus.CANCELLED: "FunctionCancelled",
}


def finalize(
    run: Run,
    fn_slug: str,
    status: RunStatus,
    batch: Batch,
    now_ms: int,
    *,
    output: bytes | None = None,
    error: dict[str, Any] | None = None,
    keep_job: str | None = None,
    listens: Callable[[str], bool] | None = None,
) -> None:
    """Add to ``batch`` everything that ends ``run`` with ``status``.

    ``output`` is the canonical JSON return value (Completed); ``error`` the error object
    (Failed). Cancelled runs carry neither, as upstream.
    """
    stored_output = output if status is RunStatus.COMPLETED else (
        jcs.dumps(error) if error is not None else None
    )
    run.status = status
    run.ended_ms = now_ms
    run.output = stored_output
    run.pending = None
    batch.add(UpdateRun(run.id, {"status": status, "ended_ms": now_ms, "output": stored_output, "pending": None}))
    batch.add(DeleteRunJobs(run.id, keep=keep_job))
    batch.add(DeleteRunPauses(run.id))
    batch.add(AddHistory(run.id, now_ms, _HISTORY_KIND[status], data=stored_output))
    if run.attrs.get("singleton"):
        batch.add(DeleteFlow(run.attrs["singleton"], only_if=run.id))  # the key is free again
    system_events(run, fn_slug, status, batch, now_ms, output=output, error=error, listens=listens)


def system_events(
    run: Run, fn_slug: str, status: RunStatus, batch: Batch, now_ms: int, *,
    output: bytes | None, error: dict[str, Any] | None, listens: Callable[[str], bool] | None = None,
) -> None:
    events = [orjson.loads(e) for e in run.events]
    first = events[0] if events else {}
    if first.get("name") in (FN_FAILED, FN_FINISHED):
        return  # a failure handler's own end emits nothing, or failures would cascade
    data: dict[str, Any] = {
        "function_id": fn_slug,
        "run_id": run.id,
        "event": first,
        "events": events,
        "_inngest": {"status": status.value},
    }
    if status is RunStatus.COMPLETED:
        data["result"] = orjson.loads(output) if output else None
    elif status is RunStatus.FAILED and error is not None:
        data["error"] = error
    meta = first.get("meta")
    out: list[dict[str, Any]] = []
    correlation_ids: list[str | None] = list(_correlation_ids(events))
    for corr in correlation_ids or [None]:
        d = dict(data)
        if corr is not None:
            d["correlation_id"] = corr
        finished: dict[str, Any] = {"name": FN_FINISHED, "data": d, "ts": now_ms}
        if meta is not None:
            finished["meta"] = meta
        out.append(finished)
    if status in (RunStatus.FAILED, RunStatus.CANCELLED):
        extra: dict[str, Any] = {
            "name": FN_FAILED if status is RunStatus.FAILED else FN_CANCELLED,
            "data": data,
            "id": run.id,  # one per run: a retried finalization does not duplicate it
            "ts": now_ms,
        }
        if meta is not None:
            extra["meta"] = meta
        out.append(extra)
    enqueue_events(batch, [stored(e, received_ms=now_ms, internal_id=new_ulid(now_ms)) for e in out], now_ms,
                   listens)


def _correlation_ids(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        meta = (ev.get("data") or {}).get(INTERNAL_DATA_KEY)
        if isinstance(meta, dict) and meta.get("correlation_id"):
            out.append(str(meta["correlation_id"]))
    return out
