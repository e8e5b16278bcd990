"""The replay engine: run a handler from the top, answer steps from memos, stop at new work.

Each request re-runs the user's handler. A step call hashes its id (``StepIdCounter``), takes
its memo if the server sent one, and otherwise either executes (``step.run``) or stops the
handler by raising an ``Interrupt`` that carries the ops to return (PROTOCOL.md §4). All
per-step work is O(1), so replaying N memoized steps costs O(N).
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import orjson

from pyngest.protocol.opcodes import Opcode
from pyngest.protocol.step_ids import StepIdCounter, hash_step_id
from pyngest.sdk import errors
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import MiddlewareManager
from pyngest.sdk.types import EMPTY

if TYPE_CHECKING:
    from pyngest.sdk.client import Inngest
    from pyngest.sdk.function import Function

T = TypeVar("T")


class Interrupt(BaseException):
    """Stops the handler: these step responses go back to the server.

    A BaseException, so a user's ``except Exception`` cannot swallow it.
    """

    def __init__(self, responses: list[StepResponse]) -> None:
        self.responses = responses


class SkipInterrupt(BaseException):
    """A step other than the targeted one was reached (PROTOCOL.md §4.5)."""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id


class NestedStepInterrupt(BaseException):
    """A step was called from inside another step's handler."""


class CheckpointRefused(BaseException):
    """The step before this one could not be checkpointed: this request stops here and answers
    the classic way for that step (:mod:`pyngest.sdk.checkpoint`)."""


class UserError(Exception):
    def __init__(self, err: Exception) -> None:
        self.err = err


class StepInfo:
    """What an op says about its step (the op object of PROTOCOL.md §4.1)."""

    __slots__ = ("id", "display_name", "name", "op", "opts", "user_id", "index")

    def __init__(
        self,
        id: str,  # noqa: A002
        display_name: str,
        name: str,
        op: Opcode,
        opts: dict[str, Any] | None,
        user_id: str,
        index: int | None,
    ) -> None:
        self.id = id
        self.display_name = display_name
        self.name = name
        self.op = op
        self.opts = opts
        self.user_id = user_id
        self.index = index

    def to_wire(self) -> dict[str, Any]:
        # Key order and nulls as the official SDK's model dump.
        return {
            "displayName": self.display_name,
            "id": self.id,
            "name": self.name,
            "op": self.op.value,
            "opts": self.opts,
            "userland": {"id": self.user_id, "index": self.index},
        }


@dataclass
class StepResponse:
    info: StepInfo
    output: object = None
    error: Exception | None = None


@dataclass
class CallResult:
    """What one request produced: a function output or error, or step responses (``multi``)."""

    error: Exception | None = None
    multi: list[CallResult] | None = None
    output: object = EMPTY
    step: StepInfo | None = None

    @property
    def is_empty(self) -> bool:
        return self.error is None and self.multi is None and self.output is EMPTY and self.step is None


def error_data(err: BaseException) -> dict[str, Any]:
    """The JSON an error travels as: ``{code, message, name, stack}``."""
    if isinstance(err, errors.Error):
        return {"code": err.code.value, "message": err.message, "name": err.name, "stack": err.stack}
    return {
        "code": errors.ErrorCode.UNKNOWN.value,
        "message": str(err),
        "name": type(err).__name__,
        "stack": errors.format_traceback(err),
    }


_DUMP_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _refuse(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(value: object) -> bytes:
    """JSON bytes for a response body; raises OutputUnserializableError.

    orjson first; the stdlib as a fallback for the values it refuses but ``json.dumps``
    takes (ints beyond 64 bits), so what serializes matches the official SDK.
    """
    try:
        return orjson.dumps(value, default=_refuse, option=_DUMP_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        try:
            return json.dumps(value).encode()
        except (TypeError, ValueError) as err:
            raise errors.OutputUnserializableError(str(err)) from None


def is_serializable(value: object) -> bool:
    try:
        dumps(value)
    except errors.OutputUnserializableError:
        return False
    return True


# Exact types that have no __await__: a step's output of one of these needs no awaitable check
# (inspect.isawaitable's ABC test is a good part of a small step's cost).
NEVER_AWAITABLE = frozenset((int, str, float, bool, type(None), dict, list, tuple, bytes))


def is_coroutine_function(fn: object) -> TypeGuard[Callable[..., Coroutine[Any, Any, Any]]]:
    """``inspect.iscoroutinefunction``; for a plain function without attributes (no
    ``functools.wraps``, no coroutine marker) its code flags answer directly."""
    if type(fn) is types.FunctionType and not fn.__dict__:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


class Execution:
    """Replay state of one request."""

    __slots__ = (
        "memos",
        "middleware",
        "target",
        "disable_immediate",
        "attempt",
        "max_attempts",
        "counter",
        "in_parallel",
        "in_step",
        "new_code",
        "logger",
        "gate",
        "resume",
        "_warned",
        "_exhausted_fired",
    )

    def __init__(
        self,
        memos: StepMemos,
        middleware: MiddlewareManager,
        target: str | None,
        disable_immediate: bool,
        attempt: int,
        max_attempts: int | None,
        logger: Any,
        gate: Callable[[], Any] | None = None,
        resume: Callable[[StepInfo, object], Any] | None = None,
    ) -> None:
        self.memos = memos
        self.middleware = middleware
        self.target = target
        self.disable_immediate = disable_immediate
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.counter = StepIdCounter()
        self.in_parallel = False
        self.in_step = False
        # Logging through ctx.logger is muted until new (not replayed) code runs.
        self.new_code = False
        self.logger = logger
        # Checkpointing: called (awaited for async functions) before a step's code runs, to
        # make the previous step durable first; raises CheckpointRefused if it cannot be.
        self.gate = gate
        # Checkpointing without middleware: called after a step.run's code
        # with its output; the memo to go on with in the same call of the handler, or EMPTY to
        # stop there as without it (the request then answers, or replays with the step memoized)
        self.resume = resume
        self._warned = False
        self._exhausted_fired = False

    def take(self, user_id: str) -> tuple[str, int, Any]:
        """Hash the step's id (counting repeats) and take its memo, or EMPTY."""
        if type(user_id) is not str and not isinstance(user_id, str):
            raise TypeError(f"a step id must be a string, got {type(user_id).__name__}")
        # StepIdCounter.next, inlined (once per step and replay)
        seen = self.counter.seen
        n = seen.get(user_id, 0)
        seen[user_id] = n + 1
        # one argument for a first use: the cache's key is then the id itself, no tuple
        hashed = hash_step_id(user_id) if n == 0 else hash_step_id(user_id, n)
        if self.in_step:
            raise NestedStepInterrupt()
        return hashed, n, self.memos.pop(hashed)

    @staticmethod
    def step_info(
        hashed: str, n: int, user_id: str, op: Opcode, name: str | None, opts: dict[str, Any] | None
    ) -> StepInfo:
        # Built only for steps without a memo: replaying memoized steps stays cheap. Positional
        # (id, display_name, name, op, opts, user_id, index): no dict of keywords per step.
        return StepInfo(hashed, user_id, user_id if name is None else name, op, opts, user_id, n if n else None)

    def exhausted_now(self) -> bool:
        """True once: when no memos are left, new code starts (fire the hooks)."""
        if self._exhausted_fired or self.memos.remaining:
            return False
        self._exhausted_fired = True
        self.new_code = True
        return True

    def resolve(self, info: StepInfo) -> None:
        """For a step without a memo: return to execute it now, or raise to stop the handler."""
        targeting = self.target is not None
        if targeting and self.target != info.id:
            raise SkipInterrupt(info.display_name)
        if self.memos.size and not self.in_parallel and not targeting:
            self.warn_nondeterminism(
                f'step "{info.display_name}" was reached before {self.memos.size} memoized '
                "step(s): the function's steps changed order or a step id changed since the run "
                "started (code outside steps must be deterministic)"
            )
        if self.in_parallel and not targeting:
            if info.op is Opcode.STEP_RUN:
                info.op = Opcode.STEP_PLANNED
            raise Interrupt([StepResponse(info)])
        if info.op is Opcode.STEP_RUN:
            if self.disable_immediate and not targeting:
                # After parallel steps the server asks for plans, not inline execution.
                info.op = Opcode.STEP_PLANNED
                raise Interrupt([StepResponse(info)])
            return
        raise Interrupt([StepResponse(info)])

    def step_error(self, info: StepInfo, err: Exception) -> Interrupt:
        """A step.run handler raised: StepError while retries remain, else StepFailed."""
        last = self.max_attempts is not None and self.attempt + 1 >= self.max_attempts
        info.op = Opcode.STEP_FAILED if last else Opcode.STEP_ERROR
        return Interrupt([StepResponse(info, error=err)])

    def nested_error(self, info: StepInfo) -> Interrupt:
        info.op = Opcode.STEP_ERROR
        err = errors.CodedError(
            errors.ErrorCode.STEP_NESTED,
            "Nested steps are not supported.",
            is_retriable=False,
        )
        return Interrupt([StepResponse(info, error=err)])

    def warn_nondeterminism(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.logger.warning(message)

    def check_leftovers(self) -> None:
        if self.memos.size and self.target is None:
            self.warn_nondeterminism(
                f"the function finished with {self.memos.size} memoized step(s) never reached: "
                "steps were removed or renamed since the run started"
            )


def _result_from_interrupt(interrupt: Interrupt) -> CallResult:
    # positional (error, multi, output, step): once per replay, no dict of keywords
    return CallResult(None, [CallResult(r.error, None, r.output, r.info) for r in interrupt.responses])


def _unexpected(err: SkipInterrupt) -> CallResult:
    return CallResult(
        errors.StepUnexpectedError(
            f'found step "{err.step_id}" when targeting a different step'
        )
    )


# The run logic is written once, as a generator that asks its driver to call a middleware hook
# or the user's handler; an async and a sync driver answer (awaiting, or calling directly).
HOOK = "hook"
CALL = "call"
Ask = tuple[str, tuple[Any, ...]]


def run(exe: Execution, client: Inngest, fn: Function[Any], ctx: Any, output_type: object) -> Generator[Ask, Any, CallResult]:
    """Replay the handler once: input hooks, the handler, output hooks; never raises."""
    try:
        yield HOOK, ("transform_input", ctx, fn, exe.memos)
        yield HOOK, ("before_memoization",)
        if exe.exhausted_now():
            yield HOOK, ("after_memoization",)
            yield HOOK, ("before_execution",)
    except Exception as err:
        return CallResult(err)
    try:
        try:
            output = yield CALL, ()
            output = client._serialize(output, output_type)
        except Exception as user_err:
            raise UserError(user_err) from None
        yield HOOK, ("after_execution",)
        exe.check_leftovers()
        return CallResult(output=output)
    except Interrupt as interrupt:
        try:
            yield HOOK, ("after_execution",)
        except Exception as err:
            return CallResult(err)
        return _result_from_interrupt(interrupt)
    except UserError as err:
        return CallResult(err.err)
    except SkipInterrupt as err:
        return _unexpected(err)
    except NestedStepInterrupt:
        return CallResult(
            errors.CodedError(errors.ErrorCode.STEP_NESTED, "Nested steps are not supported.", is_retriable=False)
        )
    except Exception as err:
        return CallResult(err)


async def drive_async(gen: Generator[Ask, Any, T], mw: MiddlewareManager, call: Callable[[], Awaitable[Any]]) -> T:
    value: Any = None
    exc: BaseException | None = None
    hooks = not mw.empty  # without middleware every hook is a no-op: skip the coroutine per hook
    while True:
        try:
            kind, args = gen.throw(exc) if exc is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, exc = None, None
        try:
            if kind == HOOK:
                if hooks:
                    await mw.call(*args)
            else:
                value = await call()
        except BaseException as err:  # noqa: BLE001 - handed back to the generator, which decides
            exc = err


def drive_sync(gen: Generator[Ask, Any, T], mw: MiddlewareManager, call: Callable[[], Any]) -> T:
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            kind, args = gen.throw(exc) if exc is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, exc = None, None
        try:
            if kind == HOOK:
                mw.call_sync(*args)
            else:
                value = call()
                if type(value) not in NEVER_AWAITABLE and inspect.isawaitable(value):
                    raise errors.AsyncUnsupportedError("the handler returned an awaitable in a non-async function")
        except BaseException as err:  # noqa: BLE001 - handed back to the generator, which decides
            exc = err


def _invoke(handler: Callable[..., Any], ctx: Any, two_args: bool) -> Callable[[], Any]:
    return lambda: handler(ctx, ctx.step) if two_args else handler(ctx)


async def run_async(
    exe: Execution, client: Inngest, fn: Function[Any], ctx: Any,
    handler: Callable[..., Awaitable[Any]], two_args: bool, output_type: object,
) -> CallResult:
    return await drive_async(run(exe, client, fn, ctx, output_type), exe.middleware, _invoke(handler, ctx, two_args))


def run_sync(
    exe: Execution, client: Inngest, fn: Function[Any], ctx: Any,
    handler: Callable[..., Any], two_args: bool, output_type: object,
) -> CallResult:
    return drive_sync(run(exe, client, fn, ctx, output_type), exe.middleware, _invoke(handler, ctx, two_args))
