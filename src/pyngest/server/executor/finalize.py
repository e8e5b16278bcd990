"""Ending a run: its final status and output, clean-up, and the system events (PROTOCOL.md §5.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.events import FN_CANCELLED, FN_FAILED, FN_FINISHED, INTERNAL_DATA_KEY
from pyngest.protocol.ids import new_ulid
from pyngest.server.events import enqueue_events
from pyngest.server.model import (
    AddHistory,
    Batch,
    DeleteFlow,
    DeleteRunJobs,
    DeleteRunPauses,
    Run,
    RunStatus,
    StoredEvent,
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

    ``output`` is the canonical JSON the run reports as its output: the return value
    (Completed) or, for a Failed run, the error object the SDK answered with, unchanged.
    ``error`` is the standard error object (Failed) that ``inngest/function.failed`` carries,
    and the run's output too when the SDK gave none (the server's own errors). Cancelled runs
    carry neither, as upstream.
    """
    if status is RunStatus.COMPLETED:
        stored_output = output
    elif status is RunStatus.FAILED:
        stored_output = output if output is not None else (jcs.dumps(error) if error is not None else None)
    else:
        stored_output = None
    run.status = status
    run.ended_ms = now_ms
    run.output = stored_output
    run.pending = None
    batch.add(UpdateRun(run.id, {"status": status, "ended_ms": now_ms, "output": stored_output, "pending": None}))
    batch.add(DeleteRunJobs(run.id, keep=keep_job))
    if run.may_have_pauses:
        batch.add(DeleteRunPauses(run.id))
    batch.add(AddHistory(run.id, now_ms, _HISTORY_KIND[status], data=stored_output))
    if run.attrs.get("singleton"):
        batch.add(DeleteFlow(run.attrs["singleton"], only_if=run.id))  # the key is free again
    result = output if status is RunStatus.COMPLETED else None
    system_events(run, fn_slug, status, batch, now_ms, output=result, error=error, listens=listens)


def system_events(
    run: Run, fn_slug: str, status: RunStatus, batch: Batch, now_ms: int, *,
    output: bytes | None, error: dict[str, Any] | None, listens: Callable[[str], bool] | None = None,
) -> None:
    """``inngest/function.finished`` (and ``.failed`` / ``.cancelled``) for the run.

    Their bodies are assembled from the run's stored canonical fragments (its events, its
    output) in canonical key order, rather than re-serializing copies of them.
    """
    first = orjson.loads(run.events[0]) if run.events else {}
    if first.get("name") in (FN_FAILED, FN_FINISHED):
        return  # a failure handler's own end emits nothing, or failures would cascade
    meta = first.get("meta")
    meta_json = b',"meta":' + jcs.dumps(meta) if meta is not None else b""
    head = b'{"_inngest":{"status":' + jcs.dumps(status.value) + b"},"
    tail = b"".join((
        (b'"error":' + jcs.dumps(error) + b",") if status is RunStatus.FAILED and error is not None else b"",
        b'"event":', run.events[0] if run.events else b"{}",
        b',"events":[', b",".join(run.events), b'],"function_id":', jcs.dumps(fn_slug),
        (b',"result":' + (output or b"null")) if status is RunStatus.COMPLETED else b"",
        b',"run_id":', jcs.dumps(run.id), b"}",
    ))
    out: list[StoredEvent] = []
    for corr in _correlation_ids(run.events) or [None]:
        data = head + (b'"correlation_id":' + jcs.dumps(corr) + b"," if corr is not None else b"") + tail
        out.append(_event(FN_FINISHED, new_ulid(now_ms), data, meta_json, now_ms))
    if status in (RunStatus.FAILED, RunStatus.CANCELLED):
        # id = the run id: one per run, so a retried finalization does not duplicate it
        name = FN_FAILED if status is RunStatus.FAILED else FN_CANCELLED
        out.append(_event(name, run.id, head + tail, meta_json, now_ms))
    for ev in out:
        ev.env_id = run.env_id  # a run's system events belong to its environment
    enqueue_events(batch, out, now_ms, listens)


def _event(name: str, event_id: str, data: bytes, meta_json: bytes, now_ms: int) -> StoredEvent:
    body = b"".join((b'{"data":', data, b',"id":', jcs.dumps(event_id), meta_json, b',"name":', jcs.dumps(name),
                     b',"ts":', str(now_ms).encode(), b',"user":{}}'))
    return StoredEvent(internal_id=new_ulid(now_ms), name=name, event_id=event_id, ts=now_ms,
                       received_ms=now_ms, body=body)


def _correlation_ids(events: list[bytes]) -> list[str | None]:
    """Invoke correlation ids carried by the run's events (only invoke events have one)."""
    out: list[str | None] = []
    for raw in events:
        if b'"correlation_id"' not in raw:
            continue  # cheap test before parsing
        meta = (orjson.loads(raw).get("data") or {}).get(INTERNAL_DATA_KEY)
        if isinstance(meta, dict) and meta.get("correlation_id"):
            out.append(str(meta["correlation_id"]))
    return out
