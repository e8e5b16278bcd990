"""Step tools: ``step.run``, ``sleep``, ``sleep_until``, ``wait_for_event``, ``send_event``,
``invoke``, ``invoke_by_id``, ``parallel`` and ``ai.infer`` (FEATURES.md §8, §23).

``Step`` is for ``async def`` handlers, ``StepSync`` for plain ones. Both build the same ops;
the shared decisions live in :mod:`pyngest.sdk.replay`.
"""

from __future__ import annotations

import datetime
import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pyngest.protocol import durations
from pyngest.protocol.opcodes import Opcode
from pyngest.sdk import errors
from pyngest.sdk.memos import Output
from pyngest.sdk.options import duration_str, to_ms
from pyngest.sdk.replay import (
    NEVER_AWAITABLE,
    Execution,
    Interrupt,
    NestedStepInterrupt,
    SkipInterrupt,
    StepResponse,
    is_coroutine_function,
)
from pyngest.sdk.types import EMPTY, Event, SendEventsResult, to_events

if TYPE_CHECKING:
    from pyngest.experimental.ai.base import BaseAdapter
    from pyngest.sdk.client import Inngest
    from pyngest.sdk.function import Function

T = TypeVar("T")


class ParallelMode(enum.Enum):
    """``WAIT``: resume once every parallel step is done. ``RACE``: resume after each one."""

    RACE = "race"
    WAIT = "wait"


def to_iso_utc(value: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ``; a naive datetime is local time (as ``astimezone`` reads it)."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _sleep_target(until: datetime.datetime | str) -> str:
    if isinstance(until, datetime.datetime):
        return to_iso_utc(until)
    if isinstance(until, str):
        ms = durations.parse_time_ms(until)
        if ms is None:
            raise ValueError(f"sleep_until: {until!r} is not an ISO 8601 date-time")
        return durations.iso_ms(ms)
    raise TypeError(f"sleep_until takes a datetime (or ISO string), got {type(until).__name__}")


def _resumed(client: Inngest, memo: Any, output_type: object) -> Any:
    """Checkpointing goes on in the same call of the handler after a step: the value its memo
    (EMPTY: none, stop as without) gives, as a replay would have taken it."""
    if memo is EMPTY:
        return EMPTY
    data = Output.from_raw(memo).data
    return data if output_type is EMPTY else client._deserialize(data, output_type)


def _memo_value(memo: Any) -> Any:
    if memo.error is not None:
        raise errors.StepError(message=memo.error.message, name=memo.error.name, stack=memo.error.stack)
    return memo.data


def _invoke_opts(
    app_id: str, function_id: str, data: Mapping[str, object] | None, timeout: Any, v: str | None, user: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": data, "v": v}
    if user is not None:
        payload["user"] = user
    return {
        "function_id": f"{app_id}-{function_id}",
        "payload": payload,
        "timeout": None if timeout is None else duration_str(timeout),
    }


def _ai_opts(adapter: BaseAdapter, body: dict[str, Any]) -> dict[str, Any]:
    adapter.on_call(body)
    return {
        "auth_key": adapter.auth_key(),
        "body": body,
        "format": adapter.format(),
        "headers": adapter.headers(),
        "type": "step.ai.infer",
        "url": adapter.url_infer(),
    }


class _StepBase:
    def __init__(self, client: Inngest, execution: Execution) -> None:
        self._client = client
        self._execution = execution

    def _sleep_name(self, duration: int | datetime.timedelta) -> str:
        return durations.iso_ms(self._client._clock.now_ms() + to_ms(duration))

    def _wait_opts(self, if_exp: str | None, timeout: int | datetime.timedelta) -> dict[str, Any]:
        return {"if": if_exp, "timeout": duration_str(timeout)}


class Step(_StepBase):
    """Step tools for ``async def`` handlers."""

    def __init__(self, client: Inngest, execution: Execution) -> None:
        super().__init__(client, execution)
        self.ai = AI(self)
        self._group = Group(execution)

    async def _begin(
        self, step_id: str, op: Opcode, name: str | None = None, opts: dict[str, Any] | None = None
    ) -> tuple[Any, Any]:
        """(None, memo) for a memoized step; (info, None) to execute it; raises to stop."""
        exe = self._execution
        hashed, n, memo = exe.take(step_id)
        if exe.exhausted_now():
            await exe.middleware.call("after_memoization")
            await exe.middleware.call("before_execution")
        if memo is not EMPTY:
            return None, memo
        info = exe.step_info(hashed, n, step_id, op, name, opts)
        exe.resolve(info)
        return info, None

    async def _op(self, step_id: str, op: Opcode, **kw: Any) -> Any:
        _, memo = await self._begin(step_id, op, **kw)
        if memo is None:  # only step.run executes inline
            raise errors.Error("unreachable: a non-run step asked to execute")
        return _memo_value(memo)

    async def run(
        self,
        step_id: str,
        handler: Callable[..., Awaitable[T]] | Callable[..., T],
        *handler_args: Any,
        output_type: object = EMPTY,
    ) -> T:
        """Run ``handler(*handler_args)`` once, retried on error and memoized on success."""
        # _begin inlined: a replay passes every memoized step before the one it runs
        exe = self._execution
        hashed, n, memo = exe.take(step_id)
        if exe.exhausted_now():
            await exe.middleware.call("after_memoization")
            await exe.middleware.call("before_execution")
        if memo is not EMPTY:
            if memo.error is None and output_type is EMPTY:
                return memo.data  # type: ignore[no-any-return]
            return self._client._deserialize(_memo_value(memo), output_type)  # type: ignore[return-value]
        info = exe.step_info(hashed, n, step_id, Opcode.STEP_RUN, None, None)
        exe.resolve(info)
        if exe.gate is not None:
            await exe.gate()
        exe.in_step = True
        try:
            if is_coroutine_function(handler):
                output = await handler(*handler_args)
            else:
                output = handler(*handler_args)
                if type(output) not in NEVER_AWAITABLE and inspect.isawaitable(output):
                    output = await output
            output = self._client._serialize(output, output_type)
        except (errors.NonRetriableError, errors.RetryAfterError):
            raise  # these fail or delay the whole function
        except NestedStepInterrupt:
            raise exe.nested_error(info) from None
        except Exception as err:
            if err.__traceback__ is not None:  # drop our own frame from the user's stack
                err.__traceback__ = err.__traceback__.tb_next
            raise exe.step_error(info, err) from None
        finally:
            exe.in_step = False
        if exe.resume is not None:
            value = _resumed(self._client, exe.resume(info, output), output_type)
            if value is not EMPTY:
                return value  # type: ignore[no-any-return]
        raise Interrupt([StepResponse(info, output)])

    async def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        """Pause for ``duration`` (milliseconds or a timedelta)."""
        await self._op(step_id, Opcode.SLEEP, name=self._sleep_name(duration))

    async def sleep_until(self, step_id: str, until: datetime.datetime | str) -> None:
        """Pause until ``until``."""
        await self._op(step_id, Opcode.SLEEP, name=_sleep_target(until))

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
    ) -> Event | None:
        """Wait for an event named ``event`` matching ``if_exp``; None on timeout."""
        out = await self._op(step_id, Opcode.WAIT_FOR_EVENT, name=event, opts=self._wait_opts(if_exp, timeout))
        return None if out is None else Event.model_validate(out)

    async def send_event(self, step_id: str, events: Event | Mapping[str, Any] | list[Any]) -> list[str]:
        """Send events as a step, so a retried function does not send them twice."""

        async def send() -> list[str]:
            batch = to_events(events, {})
            mw = self._execution.middleware
            await mw.call("before_send_events", batch)
            result: SendEventsResult | None = None
            try:
                result = SendEventsResult(ids=await self._client.send(batch, skip_middleware=True))
            except errors.SendEventsError as err:
                result = SendEventsResult(error=str(err), ids=err.ids)
                raise
            except Exception as err:
                result = SendEventsResult(error=str(err), ids=[])
                raise
            finally:
                if result is not None:
                    await mw.call("after_send_events", result)
            return result.ids

        return await self.run(step_id, send)

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        user: Mapping[str, object] | None = None,
        v: str | None = None,
    ) -> T:
        """Run another function and return its result (raises StepError if it failed)."""
        out = await self.invoke_by_id(
            step_id, app_id=function.app_id, function_id=function.local_id, data=data, timeout=timeout, user=user, v=v
        )
        return self._client._deserialize(out, function.output_type)  # type: ignore[return-value]

    async def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        user: Mapping[str, object] | None = None,
        v: str | None = None,
    ) -> object:
        """Like ``invoke``, by app and function id (defaults to this app)."""
        opts = _invoke_opts(app_id or self._client.app_id, function_id, data, timeout, v, user)
        return await self._op(step_id, Opcode.INVOKE_FUNCTION, opts=opts)

    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[T]], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the steps started by ``callables`` in parallel; returns their results in order."""
        return await self._group.parallel(callables, parallel_mode)


class StepSync(_StepBase):
    """Step tools for plain (non-async) handlers."""

    def __init__(self, client: Inngest, execution: Execution) -> None:
        super().__init__(client, execution)
        self.ai = AISync(self)
        self._group = GroupSync(execution)

    def _begin(
        self, step_id: str, op: Opcode, name: str | None = None, opts: dict[str, Any] | None = None
    ) -> tuple[Any, Any]:
        """(None, memo) for a memoized step; (info, None) to execute it; raises to stop."""
        exe = self._execution
        hashed, n, memo = exe.take(step_id)
        if exe.exhausted_now():
            exe.middleware.call_sync("after_memoization")
            exe.middleware.call_sync("before_execution")
        if memo is not EMPTY:
            return None, memo
        info = exe.step_info(hashed, n, step_id, op, name, opts)
        exe.resolve(info)
        return info, None

    def _op(self, step_id: str, op: Opcode, **kw: Any) -> Any:
        _, memo = self._begin(step_id, op, **kw)
        if memo is None:
            raise errors.Error("unreachable: a non-run step asked to execute")
        return _memo_value(memo)

    def run(
        self,
        step_id: str,
        handler: Callable[..., T],
        *handler_args: Any,
        output_type: object = EMPTY,
    ) -> T:
        """Run ``handler(*handler_args)`` once, retried on error and memoized on success."""
        # _begin inlined: a replay passes every memoized step before the one it runs
        exe = self._execution
        hashed, n, memo = exe.take(step_id)
        if exe.exhausted_now():
            exe.middleware.call_sync("after_memoization")
            exe.middleware.call_sync("before_execution")
        if memo is not EMPTY:
            if memo.error is None and output_type is EMPTY:
                return memo.data  # type: ignore[no-any-return]
            return self._client._deserialize(_memo_value(memo), output_type)  # type: ignore[return-value]
        info = exe.step_info(hashed, n, step_id, Opcode.STEP_RUN, None, None)
        exe.resolve(info)
        if exe.gate is not None:
            exe.gate()
        exe.in_step = True
        try:
            output = self._client._serialize(handler(*handler_args), output_type)
        except (errors.NonRetriableError, errors.RetryAfterError):
            raise
        except NestedStepInterrupt:
            raise exe.nested_error(info) from None
        except Exception as err:
            if err.__traceback__ is not None:  # drop our own frame from the user's stack
                err.__traceback__ = err.__traceback__.tb_next
            raise exe.step_error(info, err) from None
        finally:
            exe.in_step = False
        if exe.resume is not None:
            value = _resumed(self._client, exe.resume(info, output), output_type)
            if value is not EMPTY:
                return value  # type: ignore[no-any-return]
        raise Interrupt([StepResponse(info, output)])

    def sleep(self, step_id: str, duration: int | datetime.timedelta) -> None:
        """Pause for ``duration`` (milliseconds or a timedelta)."""
        self._op(step_id, Opcode.SLEEP, name=self._sleep_name(duration))

    def sleep_until(self, step_id: str, until: datetime.datetime | str) -> None:
        """Pause until ``until``."""
        self._op(step_id, Opcode.SLEEP, name=_sleep_target(until))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        if_exp: str | None = None,
        timeout: int | datetime.timedelta,
    ) -> Event | None:
        """Wait for an event named ``event`` matching ``if_exp``; None on timeout."""
        out = self._op(step_id, Opcode.WAIT_FOR_EVENT, name=event, opts=self._wait_opts(if_exp, timeout))
        return None if out is None else Event.model_validate(out)

    def send_event(self, step_id: str, events: Event | Mapping[str, Any] | list[Any]) -> list[str]:
        """Send events as a step, so a retried function does not send them twice."""

        def send() -> list[str]:
            batch = to_events(events, {})
            mw = self._execution.middleware
            mw.call_sync("before_send_events", batch)
            result: SendEventsResult | None = None
            try:
                result = SendEventsResult(ids=self._client.send_sync(batch, skip_middleware=True))
            except errors.SendEventsError as err:
                result = SendEventsResult(error=str(err), ids=err.ids)
                raise
            except Exception as err:
                result = SendEventsResult(error=str(err), ids=[])
                raise
            finally:
                if result is not None:
                    mw.call_sync("after_send_events", result)
            return result.ids

        return self.run(step_id, send)

    def invoke(
        self,
        step_id: str,
        *,
        function: Function[T],
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        user: Mapping[str, object] | None = None,
        v: str | None = None,
    ) -> T:
        """Run another function and return its result (raises StepError if it failed)."""
        out = self.invoke_by_id(
            step_id, app_id=function.app_id, function_id=function.local_id, data=data, timeout=timeout, user=user, v=v
        )
        return self._client._deserialize(out, function.output_type)  # type: ignore[return-value]

    def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, object] | None = None,
        timeout: int | datetime.timedelta | None = None,
        user: Mapping[str, object] | None = None,
        v: str | None = None,
    ) -> object:
        """Like ``invoke``, by app and function id (defaults to this app)."""
        opts = _invoke_opts(app_id or self._client.app_id, function_id, data, timeout, v, user)
        return self._op(step_id, Opcode.INVOKE_FUNCTION, opts=opts)

    def parallel(
        self,
        callables: tuple[Callable[[], T], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the steps started by ``callables`` in parallel; returns their results in order."""
        return self._group.parallel(callables, parallel_mode)


def _collect(responses: list[StepResponse], mode: ParallelMode) -> Interrupt:
    if mode is ParallelMode.RACE:
        for r in responses:
            if r.info.opts is None:
                r.info.opts = {}
            r.info.opts["parallelMode"] = mode.value
    return Interrupt(responses)


class Group:
    """``ctx.group`` for async handlers."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    async def parallel(
        self,
        callables: tuple[Callable[[], Awaitable[T]], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the steps started by ``callables`` in parallel; returns their results in order."""
        exe = self._execution
        outer = exe.in_parallel
        exe.in_parallel = True
        try:
            outputs: list[T] = []
            responses: list[StepResponse] = []
            for cb in callables:
                try:
                    outputs.append(await cb())
                except Interrupt as interrupt:
                    responses.extend(interrupt.responses)
                except SkipInterrupt:
                    pass
            if responses:
                raise _collect(responses, parallel_mode)
            return tuple(outputs)
        finally:
            exe.in_parallel = outer


class GroupSync:
    """``ctx.group`` for plain handlers."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def parallel(
        self,
        callables: tuple[Callable[[], T], ...],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the steps started by ``callables`` in parallel; returns their results in order."""
        exe = self._execution
        outer = exe.in_parallel
        exe.in_parallel = True
        try:
            outputs: list[T] = []
            responses: list[StepResponse] = []
            for cb in callables:
                try:
                    outputs.append(cb())
                except Interrupt as interrupt:
                    responses.extend(interrupt.responses)
                except SkipInterrupt:
                    pass
            if responses:
                raise _collect(responses, parallel_mode)
            return tuple(outputs)
        finally:
            exe.in_parallel = outer


class AI:
    """``step.ai``: model calls made by the server while the run waits (op ``AIGateway``)."""

    def __init__(self, step: Step) -> None:
        self._step = step

    async def infer(self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]) -> dict[str, object]:
        """Have the server send ``body`` to the model behind ``adapter``; returns its JSON reply."""
        out = await self._step._op(step_id, Opcode.AI_GATEWAY, opts=_ai_opts(adapter, body))
        return out  # type: ignore[no-any-return]


class AISync:
    def __init__(self, step: StepSync) -> None:
        self._step = step

    def infer(self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]) -> dict[str, object]:
        """Have the server send ``body`` to the model behind ``adapter``; returns its JSON reply."""
        out = self._step._op(step_id, Opcode.AI_GATEWAY, opts=_ai_opts(adapter, body))
        return out  # type: ignore[no-any-return]
