"""The replay's shortcuts for the common case give what the general path gives.

A replay passes every memoized step before the one it runs (with checkpointing, a 10-step run
replays 55 steps), so the per-step path skips work where the answer is known without it: a
plain memo ``{"data": ...}``, a plain function's code flags, a step output of a builtin type.
Each shortcut must agree with the general path it stands in for.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

import pyngest as inngest
from pyngest.protocol.step_ids import StepIdCounter, hash_step_id
from pyngest.sdk.execute import ReplayLogger
from pyngest.sdk.function import Context
from pyngest.sdk.memos import Output, StepMemos
from pyngest.sdk.middleware import MiddlewareManager
from pyngest.sdk.replay import NEVER_AWAITABLE, Execution, Interrupt, is_coroutine_function
from pyngest.sdk.steps import Step
from pyngest.sdk.types import EMPTY


def _decoded(out: Output) -> tuple[Any, Any]:
    err = out.error
    return out.data, None if err is None else (err.name, err.message, err.stack)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"data": 5}, (5, None)),
    ({"data": None}, (None, None)),
    ({"data": {"data": 1}}, ({"data": 1}, None)),
    ({"data": 1, "error": None}, (1, None)),
    ({"error": {"name": "E", "message": "m"}}, (None, ("E", "m", None))),
    ({"data": 2, "error": {"name": "E", "message": "m", "stack": "s"}}, (2, ("E", "m", "s"))),
    ({"error": {"name": "E"}}, ({"error": {"name": "E"}}, None)),  # malformed error: the data
    ({"data": 1, "other": 2}, ({"data": 1, "other": 2}, None)),  # not a wrapper: the data
    ({"datum": 1}, ({"datum": 1}, None)),
    ({}, (None, None)),
    (None, (None, None)),
    ([{"data": 1}], ([{"data": 1}], None)),
])
def test_a_memo_decodes_the_same_with_or_without_the_shortcut(raw: Any, expected: tuple[Any, Any]) -> None:
    assert _decoded(Output.from_raw(raw)) == expected
    popped = StepMemos.from_raw({"a": raw}).pop("a")  # the shortcut a replay takes
    assert type(popped) is Output and _decoded(popped) == expected


def test_popping_a_memo_gives_the_decoded_object_middleware_changed() -> None:
    memos = StepMemos.from_raw({"a": {"data": "secret"}, "b": {"data": 2}, "c": None})
    for out in memos.values():  # what an encryption middleware does in transform_input
        if out.data == "secret":
            out.data = "plain"
    assert memos.pop("a").data == "plain"
    assert memos.pop("b").data == 2
    assert memos.pop("c").data is None  # a null memo is a memo, not "none"
    assert memos.pop("a") is EMPTY and memos.size == 0


def test_popping_without_middleware_decodes_each_memo_afresh() -> None:
    raw = {"a": {"data": [1]}}
    first, second = StepMemos.from_raw(raw).pop("a"), StepMemos.from_raw(raw).pop("a")
    assert first is not second and first.data == second.data == [1]
    assert raw == {"a": {"data": [1]}}  # the request's own dict is left as it was


def test_the_inlined_step_counter_hashes_as_the_counter_does() -> None:
    client = inngest.Inngest(app_id="fast", is_production=False)
    exe = Execution(memos=StepMemos({}), middleware=MiddlewareManager(client, None), target=None,
                    disable_immediate=False, attempt=0, max_attempts=None, logger=client.logger)
    counter = StepIdCounter()
    for user_id in ("a", "b", "a", "a", "c", "b"):
        hashed, n, memo = exe.take(user_id)
        assert (hashed, n) == counter.next(user_id)
        assert hashed == hash_step_id(user_id, n) and memo is EMPTY
    with pytest.raises(TypeError):
        exe.take(3)  # type: ignore[arg-type]


class _StrId(str):
    pass


def test_a_str_subclass_is_a_step_id() -> None:
    client = inngest.Inngest(app_id="fast", is_production=False)
    exe = Execution(memos=StepMemos({hash_step_id("a"): {"data": 1}}), middleware=MiddlewareManager(client, None),
                    target=None, disable_immediate=False, attempt=0, max_attempts=None, logger=client.logger)
    assert exe.take(_StrId("a"))[2].data == 1


async def _coro_fn() -> int:
    return 1


def _plain_fn() -> int:
    return 1


@functools.wraps(_coro_fn)
def _wrapped_sync() -> Any:
    return _coro_fn()


def _marked() -> Any:
    return _coro_fn()


if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
    inspect.markcoroutinefunction(_marked)


class _Methods:
    async def coro(self) -> int:
        return 1

    def plain(self) -> int:
        return 1


async def _async_gen() -> Any:
    yield 1


def _with_attribute() -> int:
    return 1


_with_attribute.note = "x"  # type: ignore[attr-defined]


_CALLABLES = {
    "coroutine function": _coro_fn, "plain function": _plain_fn, "wrapped": _wrapped_sync, "marked": _marked,
    "async generator": _async_gen, "with an attribute": _with_attribute, "lambda": lambda: 1,
    "async method": _Methods().coro, "method": _Methods().plain, "partial of async": functools.partial(_coro_fn),
    "partial": functools.partial(_plain_fn), "builtin": len, "class": _Methods, "not callable": object(),
}


@pytest.mark.parametrize("fn", list(_CALLABLES.values()), ids=list(_CALLABLES))
def test_is_coroutine_function_agrees_with_inspect(fn: Any) -> None:
    assert is_coroutine_function(fn) == inspect.iscoroutinefunction(fn)


class _Awaitable:
    def __await__(self) -> Generator[Any, None, int]:
        yield from asyncio.sleep(0).__await__()
        return 7


class _IntWithAwait(int):
    def __await__(self) -> Generator[Any, None, int]:
        yield from asyncio.sleep(0).__await__()
        return 8


def test_only_builtin_types_skip_the_awaitable_check() -> None:
    assert not any(inspect.isawaitable(t()) for t in NEVER_AWAITABLE)
    assert _IntWithAwait not in NEVER_AWAITABLE and inspect.isawaitable(_IntWithAwait(1))


@pytest.mark.parametrize(("handler", "expected"), [
    (lambda: 5, 5),
    (_coro_fn, 1),
    (lambda: _coro_fn(), 1),  # a plain function returning a coroutine: awaited
    (lambda: _Awaitable(), 7),  # any awaitable
    (lambda: _IntWithAwait(3), 8),  # an int subclass with __await__ is awaited, as before
    (functools.partial(_coro_fn), 1),
    (lambda: {"a": 1}, {"a": 1}),
    (lambda: None, None),
], ids=["int", "coroutine function", "returns a coroutine", "returns an awaitable", "awaitable int",
        "partial", "dict", "none"])
def test_a_step_output_is_awaited_exactly_when_it_is_awaitable(
    handler: Callable[[], Awaitable[Any] | Any], expected: Any
) -> None:
    client = inngest.Inngest(app_id="fast", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> Any:
        return await ctx.step.run("s", handler)

    exe = Execution(memos=StepMemos({}), middleware=MiddlewareManager(client, None), target=None,
                    disable_immediate=False, attempt=0, max_attempts=None, logger=client.logger)
    step = Step(client, exe)
    ev = inngest.Event(name="e")
    ctx = Context(attempt=0, event=ev, events=[ev], group=step._group, job_id=None,
                  logger=ReplayLogger(client.logger, exe), request_id=None, run_id="r", step=step)

    async def go() -> Any:
        try:
            await f._handler(ctx)
        except Interrupt as stop:
            return stop.responses[0].output
        raise AssertionError("the step did not stop the handler")

    assert asyncio.run(go()) == expected


def test_a_subclass_of_output_decodes_to_itself() -> None:
    class Tagged(Output):
        __slots__ = ()

    out = Tagged.from_raw({"data": 1})
    assert type(out) is Tagged and _decoded(out) == (1, None)
