"""Run one execution request against a function: parse, replay, apply output middleware.

``execute_*`` is shared by the HTTP handler and the in-process ``mocked`` test runner;
``serve_*`` is the handler's, with checkpointing (:mod:`pyngest.sdk.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyngest.sdk import errors
from pyngest.sdk.checkpoint import Session
from pyngest.sdk.function import Context, ContextSync, Function
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import MiddlewareManager, TransformOutputResult, TransformOutputStepInfo
from pyngest.sdk.replay import (
    HOOK,
    Ask,
    CallResult,
    CheckpointRefused,
    Execution,
    StepInfo,
    drive_async,
    drive_sync,
    run,
)
from pyngest.sdk.steps import Step, StepSync
from pyngest.sdk.types import Event

if TYPE_CHECKING:
    from pyngest.sdk.client import Inngest


@dataclass
class ExecRequest:
    """The parts of an execution request body the SDK uses (PROTOCOL.md §3.4)."""

    event: Event
    events: list[Event] | None
    steps: dict[str, Any]
    use_api: bool
    attempt: int
    disable_immediate: bool
    max_attempts: int | None
    run_id: str
    stack: list[str] | None
    # What checkpointing needs (PROTOCOL.md §3.8); optional, and ignored when malformed.
    fn_id: str | None = None
    qi_id: str | None = None
    generation_id: int | None = None


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise errors.BodyInvalidError(f"invalid execution request: {what}")


def parse_request(body: object) -> ExecRequest:
    """Validate a decoded request body as strictly as the official SDK does."""
    _need(isinstance(body, dict), "the body must be a JSON object")
    assert isinstance(body, dict)
    ctx = body.get("ctx")
    _need(isinstance(ctx, dict), "'ctx' must be an object")
    assert isinstance(ctx, dict)
    attempt = ctx.get("attempt")
    _need(type(attempt) is int, "'ctx.attempt' must be an integer")
    die = ctx.get("disable_immediate_execution")
    _need(type(die) is bool, "'ctx.disable_immediate_execution' must be a boolean")
    max_attempts = ctx.get("max_attempts")
    _need(max_attempts is None or type(max_attempts) is int, "'ctx.max_attempts' must be an integer")
    run_id = ctx.get("run_id")
    _need(type(run_id) is str, "'ctx.run_id' must be a string")
    stack_obj = ctx.get("stack")
    _need(isinstance(stack_obj, dict), "'ctx.stack' must be an object")
    assert isinstance(stack_obj, dict)
    stack = stack_obj.get("stack")
    _need(stack is None or (type(stack) is list and all(type(s) is str for s in stack)), "'ctx.stack.stack' must be a list of strings")
    steps = body.get("steps")
    _need(type(steps) is dict, "'steps' must be an object")
    use_api = body.get("use_api")
    _need(type(use_api) is bool, "'use_api' must be a boolean")
    raw_events = body.get("events")
    _need(raw_events is None or type(raw_events) is list, "'events' must be a list")
    try:
        event = Event.from_wire(body.get("event"))
        events = None if raw_events is None else [Event.from_wire(e) for e in raw_events]
    except errors.BodyInvalidError as exc:
        raise errors.BodyInvalidError(f"invalid execution request: {exc}") from None
    return ExecRequest(
        event=event,
        events=events,
        steps=steps,  # type: ignore[arg-type]
        use_api=use_api,  # type: ignore[arg-type]
        attempt=attempt,  # type: ignore[arg-type]
        disable_immediate=die,  # type: ignore[arg-type]
        max_attempts=max_attempts,
        run_id=run_id,  # type: ignore[arg-type]
        stack=stack,
        fn_id=_opt_str(ctx.get("fn_id")),
        qi_id=_opt_str(ctx.get("qi_id")),
        generation_id=_opt_int(ctx.get("generation_id")),
    )


def _opt_str(value: object) -> str | None:
    return value if type(value) is str and value else None


def _opt_int(value: object) -> int | None:
    if type(value) is str and value.isdigit():
        value = int(value)
    return value if type(value) is int and value > 0 else None


class ReplayLogger:
    """``ctx.logger``: forwards to the client's logger, but only once new code runs.

    Code before the first un-memoized step runs again on every request; muting it keeps each
    log line to one occurrence per run (FEATURES.md §5, §15.5).
    """

    _methods = frozenset({"critical", "debug", "error", "exception", "fatal", "info", "log", "warn", "warning"})

    def __init__(self, logger: Any, execution: Execution) -> None:
        self._logger = logger
        self._execution = execution

    def __getattr__(self, name: str) -> Any:
        if name in self._methods and not self._execution.new_code:
            return _noop
        return getattr(self._logger, name)


def _noop(*_args: object, **_kwargs: object) -> None:
    return None


def _prepare(
    client: Inngest,
    fn: Function[Any],
    fn_id: str,
    req: ExecRequest,
    events: list[Event],
    steps: dict[str, Any],
    target: str | None,
    raw_request: object,
    headers: dict[str, str],
    *,
    is_async: bool,
    gate: Callable[[], Any] | None = None,
    resume: Callable[[StepInfo, object], Any] | None = None,
) -> tuple[Any, Execution, Any, bool, object, MiddlewareManager] | CallResult:
    found = fn.handler_for(fn_id)
    if found is None:
        return CallResult(errors.FunctionNotFoundError(f"function {fn_id} not found"))
    handler, two_args, output_type = found
    mw = MiddlewareManager.from_client(client, raw_request)
    for m in fn._middleware:
        mw.add(m)
    # Positional arguments below: a class called with keywords builds a dict of them, and
    # this runs once per replay (eleven times for a 10-step run with checkpointing).
    # Resuming the handler after a step instead of replaying it would run middleware hooks
    # once where a replay runs them per step: with middleware, every step replays.
    exe = Execution(StepMemos.from_raw(steps), mw, target, req.disable_immediate, req.attempt, req.max_attempts,
                    client.logger, gate, resume if mw.empty else None)
    logger: Any = ReplayLogger(client.logger, exe)  # a Logger to the handler's eyes
    job_id = headers.get("x-inngest-job-id") or None
    request_id = headers.get("x-request-id") or None
    ctx: Any
    # the fields in Context's order: attempt, event, events, group, job_id, logger, request_id,
    # run_id, step
    if is_async:
        step = Step(client, exe)
        ctx = Context(req.attempt, req.event, events, step._group, job_id, logger, request_id, req.run_id, step)
    else:
        step_sync = StepSync(client, exe)
        ctx = ContextSync(req.attempt, req.event, events, step_sync._group, job_id, logger, request_id, req.run_id,
                          step_sync)
    return handler, exe, ctx, two_args, output_type, mw


def _output_result(res: CallResult) -> tuple[CallResult, TransformOutputResult] | None:
    if res.multi is not None:
        if len(res.multi) > 1:
            return None  # planning parallel steps: nothing to transform
        res = res.multi[0]
    if res.is_empty:
        return None
    step = None
    if res.step is not None:
        step = TransformOutputStepInfo(id=res.step.display_name, op=res.step.op, opts=res.step.opts)
    return res, TransformOutputResult(error=res.error, output=res.output, step=step)


def _execute(exe: Execution, client: Inngest, fn: Function[Any], ctx: Any, output_type: object) -> Generator[Ask, Any, CallResult]:
    res = yield from run(exe, client, fn, ctx, output_type)
    try:
        # without middleware transform_output changes nothing: skip building its argument
        pair = None if exe.middleware.empty else _output_result(res)
        if pair is not None:
            target_res, tor = pair
            yield HOOK, ("transform_output", tor)
            target_res.error, target_res.output = tor.error, tor.output
        yield HOOK, ("before_response",)
    except Exception as err:
        return CallResult(err)
    return res


async def execute_async(
    client: Inngest,
    fn: Function[Any],
    fn_id: str,
    req: ExecRequest,
    events: list[Event],
    steps: dict[str, Any],
    target: str | None,
    raw_request: object = None,
    headers: dict[str, str] | None = None,
    gate: Callable[[], Awaitable[None]] | None = None,
    resume: Callable[[StepInfo, object], Any] | None = None,
) -> CallResult:
    """Run an async function's request; never raises (but CheckpointRefused from ``gate``)."""
    prepared = _prepare(client, fn, fn_id, req, events, steps, target, raw_request, headers or {}, is_async=True,
                        gate=gate, resume=resume)
    if isinstance(prepared, CallResult):
        return prepared
    handler, exe, ctx, two_args, output_type, mw = prepared
    call = (lambda: handler(ctx, ctx.step)) if two_args else (lambda: handler(ctx))
    return await drive_async(_execute(exe, client, fn, ctx, output_type), mw, call)


def execute_sync(
    client: Inngest,
    fn: Function[Any],
    fn_id: str,
    req: ExecRequest,
    events: list[Event],
    steps: dict[str, Any],
    target: str | None,
    raw_request: object = None,
    headers: dict[str, str] | None = None,
    gate: Callable[[], None] | None = None,
    resume: Callable[[StepInfo, object], Any] | None = None,
) -> CallResult:
    """Run a plain function's request; never raises (but CheckpointRefused from ``gate``)."""
    prepared = _prepare(client, fn, fn_id, req, events, steps, target, raw_request, headers or {}, is_async=False,
                        gate=gate, resume=resume)
    if isinstance(prepared, CallResult):
        return prepared
    handler, exe, ctx, two_args, output_type, mw = prepared
    call = (lambda: handler(ctx, ctx.step)) if two_args else (lambda: handler(ctx))
    return drive_sync(_execute(exe, client, fn, ctx, output_type), mw, call)


async def serve_async(
    client: Inngest,
    fn: Function[Any],
    fn_id: str,
    req: ExecRequest,
    events: list[Event],
    steps: dict[str, Any],
    target: str | None,
    raw_request: object = None,
    headers: dict[str, str] | None = None,
) -> CallResult:
    """An async function's HTTP request: :func:`execute_async`, then, while checkpointing lets
    the request go on after a step, again with that step memoized; never raises."""
    headers = headers or {}
    session = Session.open(client, fn, req, target, headers)
    if session is None:
        return await execute_async(client, fn, fn_id, req, events, steps, target, raw_request, headers)
    while True:
        try:
            res = await execute_async(client, fn, fn_id, req, events, steps, target, raw_request, headers,
                                      gate=session.gate, resume=session.resume(steps))
            if session.must_store(res) and not await session.report_pending():
                return session.refused()
        except CheckpointRefused:
            return session.refused()
        answer = session.answer(res)
        if answer is not None:
            return answer
        steps = session.memos(steps)


def serve_sync(
    client: Inngest,
    fn: Function[Any],
    fn_id: str,
    req: ExecRequest,
    events: list[Event],
    steps: dict[str, Any],
    target: str | None,
    raw_request: object = None,
    headers: dict[str, str] | None = None,
) -> CallResult:
    """:func:`serve_async` for plain functions."""
    headers = headers or {}
    session = Session.open(client, fn, req, target, headers)
    if session is None:
        return execute_sync(client, fn, fn_id, req, events, steps, target, raw_request, headers)
    while True:
        try:
            res = execute_sync(client, fn, fn_id, req, events, steps, target, raw_request, headers,
                               gate=session.gate_sync, resume=session.resume(steps))
            if session.must_store(res) and not session.report_pending_sync():
                return session.refused()
        except CheckpointRefused:
            return session.refused()
        answer = session.answer(res)
        if answer is not None:
            return answer
        steps = session.memos(steps)
