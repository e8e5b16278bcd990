"""What the server does with each opcode of a 206 response (PROTOCOL.md §4.2, §4.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from pyngest.protocol import jcs
from pyngest.protocol.durations import DurationError, parse_until_or_duration
from pyngest.protocol.events import FN_FINISHED, FN_INVOKED, INTERNAL_DATA_KEY
from pyngest.protocol.ids import new_ulid
from pyngest.protocol.opcodes import MAX_STEP_OUTPUT_BYTES, PRIORITY_OPS, Opcode, parse_opcode
from pyngest.server.events import enqueue_events, stored
from pyngest.server.executor.driver import DriverResponse
from pyngest.server.exprs import ExpressionError, compile_condition, interpolate, match_expression
from pyngest.server.model import (
    AddHistory,
    AddPause,
    Batch,
    Enqueue,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    RunStatus,
    UpdateRun,
)

if TYPE_CHECKING:
    from pyngest.server.executor.executor import Executor
    from pyngest.server.registry import Function

MAX_WAIT_MS = 366 * 86_400_000
DEFAULT_INVOKE_TIMEOUT_MS = 365 * 86_400_000


class InvalidOp(ValueError):
    pass


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (SDKs may send null or omit it)."""
    return value if isinstance(value, dict) else {}


def step_name(op: dict[str, Any]) -> str:
    """What people call the step: its display name, else the id they gave it."""
    name = op.get("displayName")
    if not name:
        userland = op.get("userland")
        if isinstance(userland, dict) and userland.get("id"):
            name = userland["id"]
    return str(name or op.get("name") or op.get("id") or "")


def op_timing(op: dict[str, Any], resp: DriverResponse) -> tuple[int, int]:
    timing = op.get("timing")
    if isinstance(timing, dict) and isinstance(timing.get("a"), int) and isinstance(timing.get("b"), int):
        start = timing["a"] // 1_000_000
        return start, start + timing["b"] // 1_000_000
    return resp.started_ms, resp.ended_ms


def _until(text: str, now_ms: int, what: str) -> int:
    try:
        return parse_until_or_duration(text, now_ms)
    except DurationError as exc:
        raise InvalidOp(f"invalid {what} {text!r}: {exc}") from exc


def parse_wake(op: dict[str, Any], now_ms: int) -> int:
    """A Sleep's wake time: ``opts.duration`` (Go) or ``name`` (a duration or an ISO date)."""
    text = as_dict(op.get("opts")).get("duration") or op.get("name") or ""
    if not isinstance(text, str) or not text:
        raise InvalidOp("a Sleep op needs a duration or a date")
    return max(now_ms, min(_until(text, now_ms, "sleep"), now_ms + MAX_WAIT_MS))


def parse_expiry(timeout: Any, now_ms: int, default_ms: int) -> int:
    if timeout is None:
        return now_ms + default_ms
    if not isinstance(timeout, str):
        raise InvalidOp("a timeout must be a duration string or a date")
    if timeout == "":
        return now_ms
    return min(_until(timeout, now_ms, "timeout"), now_ms + MAX_WAIT_MS)


class OpHandlers:
    def __init__(self, executor: Executor) -> None:
        self.x = executor

    def handle(self, run: Run, fn: Function, job: Job, resp: DriverResponse,
               ops: list[Any], batch: Batch) -> None:
        x = self.x
        now = x.clock.now_ms()
        parsed: list[tuple[Opcode, dict[str, Any]]] = []
        for raw in ops:
            if not isinstance(raw, dict):
                raise InvalidOp(f"an op must be a JSON object, got {type(raw).__name__}")
            try:
                parsed.append((parse_opcode(raw.get("op")), raw))
            except ValueError as exc:
                raise InvalidOp(str(exc)) from exc
        real = [(o, r) for o, r in parsed if o is not Opcode.NONE]
        if not real:
            # every op is None: the SDK has nothing to report; ask again
            x.enqueue_discovery(run, batch)
            return
        # Steps then RunComplete (a checkpointing SDK's last answer: the step it ran last and
        # the function's return) end the run: nothing is planned in parallel.
        if len(parsed) > 1 and parsed[-1][0] is not Opcode.RUN_COMPLETE:
            if not run.force_step_plan:
                run.force_step_plan = True
                batch.add(UpdateRun(run.id, {"force_step_plan": True}))
            if run.version >= 2:
                ids = [str(r.get("id")) for _, r in real if r.get("id")]
                run.pending = list(dict.fromkeys((run.pending or []) + ids))
                batch.add(UpdateRun(run.id, {"pending": run.pending}))
        # waitForEvent first: its pause must exist before anything else can resume the run
        real.sort(key=lambda pair: 0 if pair[0] in PRIORITY_OPS else 1)
        want_discovery = False
        for opcode, op in real:
            if run.ended:
                break
            want_discovery |= self._one(run, fn, job, resp, opcode, op, batch, now)
        if want_discovery and not run.ended:
            x.enqueue_discovery(run, batch)

    def _one(self, run: Run, fn: Function, job: Job, resp: DriverResponse, opcode: Opcode,
             op: dict[str, Any], batch: Batch, now: int) -> bool:
        """Handle one op; returns True when a discovery request should follow."""
        x = self.x
        op_id = str(op.get("id") or "")
        name = step_name(op)
        race = isinstance(op.get("opts"), dict) and op["opts"].get("parallelMode") == "race"
        if opcode in (Opcode.STEP_RUN, Opcode.STEP):
            data = op.get("data")
            value = jcs.dumps({"data": data}) if opcode is Opcode.STEP_RUN else jcs.dumps(data)
            if len(value) > MAX_STEP_OUTPUT_BYTES:
                return self._step_failed(run, job.attempt, resp, op_id, name, {
                    "error": "output_too_large: step output is larger than 4 MiB",
                    "name": "OutputTooLargeError",
                    "message": f"step output is {len(value)} bytes; the limit is {MAX_STEP_OUTPUT_BYTES}",
                }, batch)
            return self._step_done(run, job.attempt, resp, op, op_id, name, value, "StepCompleted", batch, race)
        if opcode is Opcode.STEP_ERROR:
            error = as_dict(op.get("error")) or {"name": "Error", "message": "step errored"}
            no_retry = resp.no_retry or bool(error.get("noRetry"))
            if not no_retry and job.attempt + 1 < fn.max_attempts:
                start, end = op_timing(op, resp)
                batch.add(AddHistory(run.id, now, "StepErrored", step_id=op_id, name=name,
                                     attempt=job.attempt, data=orjson.dumps({
                                         "error": error, "started_ms": start, "ended_ms": end})))
                x.retry(job, batch, resp.retry_at)
                return False
            return self._step_failed(run, job.attempt, resp, op_id, name, error, batch, op=op)
        if opcode is Opcode.STEP_FAILED:
            error = as_dict(op.get("error")) or {"name": "Error", "message": "step failed"}
            return self._step_failed(run, job.attempt, resp, op_id, name, error, batch, op=op)
        if opcode is Opcode.STEP_PLANNED:
            if op_id not in run.steps:
                from pyngest.server.executor.executor import execute_job

                batch.add(Enqueue(execute_job(run, f"{run.id}:p:{op_id}", op_id, now)))
                batch.add(AddHistory(run.id, now, "StepPlanned", step_id=op_id, name=name))
            return False
        if opcode is Opcode.SLEEP:
            wake = parse_wake(op, now)
            batch.add(Enqueue(Job(id=f"{run.id}:s:{op_id}", kind=JobKind.SLEEP, due_ms=wake,
                                  run_id=run.id, step_id=op_id, payload={"name": name, "race": race})))
            batch.add(AddHistory(run.id, now, "StepSleeping", step_id=op_id, name=name,
                                 data=orjson.dumps({"until_ms": wake})))
            return False
        if opcode is Opcode.WAIT_FOR_EVENT:
            self._wait_for_event(run, op, op_id, name, batch, now, race)
            return False
        if opcode is Opcode.INVOKE_FUNCTION:
            return self._invoke(run, fn, op, op_id, name, batch, now, race)
        if opcode in (Opcode.GATEWAY, Opcode.AI_GATEWAY):
            batch.add(Enqueue(Job(
                id=f"{run.id}:g:{op_id}", kind=JobKind.GATEWAY, due_ms=now, run_id=run.id,
                step_id=op_id,
                payload={"op": opcode.value, "opts": op.get("opts") or {}, "name": name, "race": race,
                         "fn": run.fn_id},
            )))
            batch.add(AddHistory(run.id, now, "StepGateway", step_id=op_id, name=name))
            return False
        if opcode is Opcode.WAIT_FOR_SIGNAL:
            return self._wait_for_signal(run, op, op_id, name, batch, now, race)
        if opcode is Opcode.RUN_COMPLETE:
            x.finish(run, fn.slug, RunStatus.COMPLETED, batch, now, output=jcs.dumps(op.get("data")))
            return False
        if opcode is Opcode.SYNC_RUN_COMPLETE:
            data = op.get("data")
            inner = data.get("data") if isinstance(data, dict) else data
            x.finish(run, fn.slug, RunStatus.COMPLETED, batch, now, output=jcs.dumps(inner))
            return False
        if opcode is Opcode.DISCOVERY_REQUEST:
            return True
        # DeferAdd / DeferAbort: the "defer" feature is not offered yet; the run goes on.
        return False

    def _step_done(self, run: Run, attempt: int, resp: DriverResponse, op: dict[str, Any], op_id: str,
                   name: str, value: bytes, kind: str, batch: Batch, race: bool) -> bool:
        pending = self.x.save_step(run, op_id, value, batch)
        if pending is None:
            return False  # duplicate result (e.g. checkpointed earlier): already handled
        start, end = op_timing(op, resp)
        batch.add(AddHistory(run.id, self.x.clock.now_ms(), kind, step_id=op_id, name=name,
                             attempt=attempt, data=orjson.dumps({"started_ms": start, "ended_ms": end})))
        return race or not pending

    def _step_failed(self, run: Run, attempt: int, resp: DriverResponse, op_id: str, name: str,
                     error: dict[str, Any], batch: Batch, op: dict[str, Any] | None = None) -> bool:
        error = dict(error)
        error.setdefault("name", "Error")
        error.setdefault("message", "")
        error.pop("noRetry", None)
        return self._step_done(run, attempt, resp, op or {}, op_id, name, jcs.dumps({"error": error}),
                               "StepFailed", batch, False)

    def _wait_for_event(self, run: Run, op: dict[str, Any], op_id: str, name: str,
                        batch: Batch, now: int, race: bool) -> None:
        opts = as_dict(op.get("opts"))
        event_name = opts.get("event") or op.get("name")
        if not isinstance(event_name, str) or not event_name:
            raise InvalidOp("a WaitForEvent op needs the event name to wait for")
        expires = parse_expiry(opts.get("timeout"), now, MAX_WAIT_MS)
        expression = opts.get("if")
        try:  # the SDK's condition, parsed here: a bad one is the app's error (once raised out of the job)
            if not expression and opts.get("match"):
                expression = match_expression(str(opts["match"]))
            if expression:
                trigger = orjson.loads(run.events[0]) if run.events else {}
                expression = interpolate(str(expression), trigger)
                compile_condition(expression)
        except ExpressionError as exc:
            raise InvalidOp(f"invalid waitForEvent condition: {exc}") from exc
        pause = Pause(
            id=f"{run.id}:{op_id}", run_id=run.id, step_id=op_id, kind=PauseKind.WAIT,
            expires_ms=expires, after_seq=self.x.state.last_event_seq, event_name=event_name,
            expression=expression or None, data={"name": name, "race": race},
        ).in_env(run.env_id)
        self._add_pause(pause, batch, now, name, "StepWaiting", {"event": event_name, "if": expression,
                                                                 "expires_ms": expires})

    def _wait_for_signal(self, run: Run, op: dict[str, Any], op_id: str, name: str,
                         batch: Batch, now: int, race: bool) -> bool:
        opts = as_dict(op.get("opts"))
        signal = opts.get("signal")
        if not isinstance(signal, str) or not signal:
            raise InvalidOp("a WaitForSignal op needs a signal name")
        expires = parse_expiry(opts.get("timeout"), now, MAX_WAIT_MS)
        existing = self.x.state.pauses.for_signal(signal)
        if existing is not None and existing.run_id != run.id:
            if opts.get("conflict") == "replace":
                from pyngest.server.model import DeletePause

                batch.add(DeletePause(existing.id))
            else:
                # the SDK asked to fail on conflict: the step errors
                return self._step_failed(run, 0, DriverResponse(status=206), op_id, name, {
                    "name": "Error", "message": f"signal {signal!r} is already being waited for by another run",
                }, batch)
        pause = Pause(
            id=f"{run.id}:{op_id}", run_id=run.id, step_id=op_id, kind=PauseKind.SIGNAL,
            expires_ms=expires, after_seq=self.x.state.last_event_seq, signal=signal,
            data={"name": name, "race": race},
        ).in_env(run.env_id)
        self._add_pause(pause, batch, now, name, "StepWaitingForSignal", {"signal": signal, "expires_ms": expires})
        return False

    def _invoke(self, run: Run, fn: Function, op: dict[str, Any], op_id: str, name: str,
                batch: Batch, now: int, race: bool) -> bool:
        opts = as_dict(op.get("opts"))
        target = opts.get("function_id")
        if not isinstance(target, str) or not target:
            raise InvalidOp("an InvokeFunction op needs opts.function_id")
        expires = parse_expiry(opts.get("timeout"), now, DEFAULT_INVOKE_TIMEOUT_MS)
        if self.x.registry.find_function(target, run.env_id) is None:
            return self._step_failed(run, 0, DriverResponse(status=206), op_id, name, {
                "name": "Error", "message": f"could not find function with ID: {target}",
            }, batch)
        corr = f"{run.id}.{op_id}"
        payload = as_dict(opts.get("payload"))
        data = dict(as_dict(payload.get("data")))
        data[INTERNAL_DATA_KEY] = {
            "fn_id": target, "correlation_id": corr, "expire": expires, "gid": new_ulid(now),
            "name": name, "source_app_id": run.app_id, "source_fn_id": fn.id, "source_fn_v": fn.version,
        }
        event: dict[str, Any] = {"name": FN_INVOKED, "data": data, "user": payload.get("user") or {}, "ts": now}
        if payload.get("v"):
            event["v"] = payload["v"]
        if payload.get("id"):
            event["id"] = payload["id"]
        pause = Pause(
            id=f"{run.id}:{op_id}", run_id=run.id, step_id=op_id, kind=PauseKind.INVOKE,
            expires_ms=expires, after_seq=self.x.state.last_event_seq, event_name=FN_FINISHED,
            expression=f"async.data.correlation_id == {orjson.dumps(corr).decode()}",
            data={"name": name, "race": race, "function_id": target},
        ).in_env(run.env_id)
        self._add_pause(pause, batch, now, name, "StepInvoking", {"function_id": target, "expires_ms": expires})
        enqueue_events(batch, [stored(event, received_ms=now, env_id=run.env_id)], now, self.x.state.listens)
        return False

    def _add_pause(self, pause: Pause, batch: Batch, now: int, name: str, kind: str,
                   info: dict[str, Any]) -> None:
        run = self.x.state.runs.peek(pause.run_id)
        if run is not None:
            run.may_have_pauses = True
        batch.add(AddPause(pause))
        batch.add(Enqueue(Job(
            id=f"{pause.run_id}:t:{pause.step_id}", kind=JobKind.PAUSE_TIMEOUT, due_ms=pause.expires_ms,
            run_id=pause.run_id, step_id=pause.step_id, payload={"pause_id": pause.id},
        )))
        batch.add(AddHistory(pause.run_id, now, kind, step_id=pause.step_id, name=name, data=orjson.dumps(info)))
