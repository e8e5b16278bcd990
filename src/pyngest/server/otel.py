"""OpenTelemetry export of runs (``--otel-endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``).

When a run ends, its trace goes out over OTLP/HTTP: a root span for the run, a span per step
(a ``step.run``, a sleep, a wait, an invoke, a fetch), a span per attempt of a step that was
retried, and a "function request" span with its attempts when the function's own request
failed. Each carries ``inngest.run_id``, ``inngest.function``, ``inngest.app`` and
``inngest.status``; attempts carry ``inngest.attempt``. The trace id is the run's ULID (128
bits), so a run is found in a tracing backend by its id.

Spans are built from the run's stored history once it has ended (the same rows the dashboard's
timeline is drawn from), with their real start and end times; nothing is kept per run while it
runs. The OpenTelemetry SDK is imported only when export is on: off, it costs nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import TYPE_CHECKING, Any

import orjson

from pyngest.protocol.ids import decode as ulid_to_int
from pyngest.server.model import AddHistory, Batch, CommitResult, Run
from pyngest.server.store.base import HistoryRow
from pyngest.server.traces import build_trace

if TYPE_CHECKING:
    from pyngest.server.service import Service

log = logging.getLogger("pyngest.otel")

_ENDED = {"FunctionCompleted", "FunctionFailed", "FunctionCancelled"}
_ATTEMPTS = {"StepErrored", "StepCompleted", "StepFailed"}
_REQUEST_ATTEMPTS = {"FunctionErrored", "FunctionErroredFinal"}
_trace_id: contextvars.ContextVar[int] = contextvars.ContextVar("pyngest_trace_id", default=0)


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP: a base URL (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` gives it) gets ``/v1/traces``."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def _ns(ms: int | None) -> int | None:
    return ms * 1_000_000 if ms is not None else None


class RunExporter:
    """A commit observer that exports each ended run's trace."""

    def __init__(self, service: Service, endpoint: str, exporter: Any | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        class RunTraceIds(RandomIdGenerator):
            # the trace of a run has the run's ULID as its id
            def generate_trace_id(self) -> int:
                return _trace_id.get() or super().generate_trace_id()

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
        self.service = service
        self.provider = TracerProvider(resource=Resource.create({"service.name": "pyngest"}),
                                       id_generator=RunTraceIds())
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("pyngest")
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, batch: Batch, result: CommitResult) -> None:
        for op in batch.ops:
            if isinstance(op, AddHistory) and op.kind in _ENDED:
                task = asyncio.get_running_loop().create_task(self._export(op.run_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.provider.shutdown)  # flushes what is still batched

    async def _export(self, run_id: str) -> None:
        try:
            run = await self.service.store.load_run(run_id)
            if run is None:
                return
            rows = await self.service.store.history(run_id)
            self._emit(run, rows)
        except Exception:  # a tracing backend's trouble must never touch the runs
            log.exception("could not export the trace of run %s", run_id)

    def _emit(self, run: Run, rows: list[HistoryRow]) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        fn = self.service.registry.functions.get(run.fn_id)
        app = self.service.registry.apps.get(run.app_id)
        slug = fn.slug if fn else str(run.attrs.get("fn_slug") or "")
        base = {"inngest.run_id": run.id, "inngest.function": slug, "inngest.app": app.name if app else ""}
        root = build_trace(run, rows, fn.name if fn else slug)
        token = _trace_id.set(ulid_to_int(run.id))
        try:
            start = run.started_ms or run.queued_ms
            span = self.tracer.start_span(slug or "run", start_time=_ns(start), attributes={
                **base, "inngest.status": run.status.value, "inngest.queued_at_ms": run.queued_ms})
        finally:
            _trace_id.reset(token)
        if run.status.value == "Failed":
            span.set_status(Status(StatusCode.ERROR, _message(run.output)))
        ctx = trace.set_span_in_context(span)
        by_step: dict[str, list[HistoryRow]] = {}
        for row in rows:
            if row.kind in _ATTEMPTS or row.kind in _REQUEST_ATTEMPTS:
                by_step.setdefault(row.step_id or "step", []).append(row)
        for step in root["childrenSpans"]:
            self._step(step, by_step.get(step.get("stepID") or "", []), base, ctx)
        if by_step.get("step"):
            self._request(by_step["step"], base, ctx)
        span.end(end_time=_ns(run.ended_ms))

    def _step(self, step: dict[str, Any], attempts: list[HistoryRow], base: dict[str, Any], ctx: Any) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        start = step.get("startedAt") or step.get("queuedAt")
        span = self.tracer.start_span(str(step["name"]), context=ctx, start_time=_ns(start), attributes={
            **base, "inngest.step.id": str(step.get("stepID") or ""), "inngest.step.op": str(step.get("stepOp") or ""),
            "inngest.status": str(step["status"]), "inngest.attempts": len(attempts) or 1,
        })
        if step["status"] == "FAILED":
            span.set_status(Status(StatusCode.ERROR))
        if len(attempts) > 1 or any(r.kind == "StepErrored" for r in attempts):
            self._attempts(attempts, base, trace.set_span_in_context(span))
        span.end(end_time=_ns(step.get("endedAt") or start))

    def _request(self, rows: list[HistoryRow], base: dict[str, Any], ctx: Any) -> None:
        """The function's own request, failed with no step to blame: its attempts."""
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        times = [_times(r) for r in rows]
        span = self.tracer.start_span("function request", context=ctx, start_time=_ns(times[0][0]), attributes={
            **base, "inngest.status": "FAILED" if rows[-1].kind == "FunctionErroredFinal" else "RUNNING",
            "inngest.attempts": len(rows)})
        span.set_status(Status(StatusCode.ERROR))
        self._attempts(rows, base, trace.set_span_in_context(span))
        span.end(end_time=_ns(times[-1][1]))

    def _attempts(self, rows: list[HistoryRow], base: dict[str, Any], ctx: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        for n, row in enumerate(rows):
            start, end = _times(row)
            ok = row.kind == "StepCompleted"
            span = self.tracer.start_span(f"attempt {n + 1}", context=ctx, start_time=_ns(start), attributes={
                **base, "inngest.attempt": n, "inngest.status": "COMPLETED" if ok else "FAILED"})
            if not ok:
                span.set_status(Status(StatusCode.ERROR, _message(_error(row))))
            span.end(end_time=_ns(end))


def _times(row: HistoryRow) -> tuple[int, int]:
    data = orjson.loads(row.data) if row.data else {}
    data = data if isinstance(data, dict) else {}
    return int(data.get("started_ms") or row.at_ms), int(data.get("ended_ms") or row.at_ms)


def _error(row: HistoryRow) -> bytes | None:
    data = orjson.loads(row.data) if row.data else {}
    error = data.get("error") if isinstance(data, dict) else None
    return orjson.dumps(error) if error is not None else None


def _message(raw: bytes | None) -> str:
    """``name: message`` of an error object, for a span's status description."""
    if not raw:
        return ""
    try:
        error = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(error, dict):
        return str(error)
    return f"{error.get('name') or 'Error'}: {error.get('message') or error.get('error') or ''}"
