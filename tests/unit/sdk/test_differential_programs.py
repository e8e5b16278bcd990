"""Property-based differential test: random step programs (repeated ids, retries, failures
caught or not, sleeps, waits, invokes, parallel and race groups, sync and async handlers) built
with the official SDK and with pyngest must answer every request of a simulated run alike."""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import fastapi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyngest
import pyngest.fast_api

from .harness import ASGIClient, event, simulate
from .official import inngest

IDS = ["a", "b", "c"]  # few names, so ids repeat and get ":n" suffixes

run_op = st.tuples(st.just("run"), st.sampled_from(IDS), st.integers(0, 3), st.booleans())
simple_op = st.one_of(
    run_op,
    st.tuples(st.just("sleep"), st.sampled_from(IDS)),
    st.tuples(st.just("wait"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("invoke"), st.sampled_from(IDS), st.booleans()),
)
parallel_op = st.tuples(
    st.just("parallel"), st.lists(st.tuples(st.just("run"), st.sampled_from(IDS), st.just(0), st.just(False)), min_size=2, max_size=3),
    st.booleans(),
)
program_st = st.lists(st.one_of(simple_op, parallel_op), min_size=1, max_size=6)


def _step_fn(attempt_of: Any, fail_times: int, value: int) -> Any:
    def handler() -> int:
        if attempt_of() < fail_times:
            raise ValueError(f"fails until attempt {fail_times}")
        return value

    return handler


def build(sdk: ModuleType, program: list[Any], use_async: bool, api_url: str = "http://127.0.0.1:9") -> tuple[Any, Any]:
    client = sdk.Inngest(app_id="prog", is_production=False, api_base_url=api_url, event_api_base_url=api_url)

    if use_async:
        async def handler(ctx: Any) -> Any:
            out: list[Any] = []
            for i, op in enumerate(program):
                out.append(await _exec_async(sdk, ctx, op, i))
            return out
    else:
        def handler(ctx: Any) -> Any:  # type: ignore[misc]
            return [_exec_sync(sdk, ctx, op, i) for i, op in enumerate(program)]

    fn = client.create_function(fn_id="p", trigger=sdk.TriggerEvent(event="e"), retries=2)(handler)
    return client, fn


async def _exec_async(sdk: Any, ctx: Any, op: Any, i: int) -> Any:
    kind = op[0]
    if kind == "run":
        _, sid, fails, catch = op
        h = _step_fn(lambda: ctx.attempt, fails, i)
        if catch:
            try:
                return await ctx.step.run(sid, h)
            except sdk.StepError as err:
                return f"caught {err.name}"
        return await ctx.step.run(sid, h)
    if kind == "sleep":
        return await ctx.step.sleep(op[1], datetime.timedelta(seconds=i + 1))
    if kind == "wait":
        got = await ctx.step.wait_for_event(op[1], event="app/reply", if_exp="async.data.ok" if op[2] else None,
                                            timeout=datetime.timedelta(minutes=1))
        return None if got is None else got.data
    if kind == "invoke":
        try:
            return await ctx.step.invoke_by_id(op[1], function_id="other", data={"i": i})
        except sdk.StepError as err:
            return f"invoke failed: {err.message}"
    calls = tuple(functools.partial(ctx.step.run, sid, functools.partial(lambda v: v, j)) for j, (_, sid, _, _) in enumerate(op[1]))
    mode = sdk.ParallelMode.RACE if op[2] else sdk.ParallelMode.WAIT
    return list(await ctx.group.parallel(calls, parallel_mode=mode))


def _exec_sync(sdk: Any, ctx: Any, op: Any, i: int) -> Any:
    kind = op[0]
    if kind == "run":
        _, sid, fails, catch = op
        h = _step_fn(lambda: ctx.attempt, fails, i)
        if catch:
            try:
                return ctx.step.run(sid, h)
            except sdk.StepError as err:
                return f"caught {err.name}"
        return ctx.step.run(sid, h)
    if kind == "sleep":
        return ctx.step.sleep(op[1], datetime.timedelta(seconds=i + 1))
    if kind == "wait":
        got = ctx.step.wait_for_event(op[1], event="app/reply", if_exp="async.data.ok" if op[2] else None,
                                      timeout=datetime.timedelta(minutes=1))
        return None if got is None else got.data
    if kind == "invoke":
        try:
            return ctx.step.invoke_by_id(op[1], function_id="other", data={"i": i})
        except sdk.StepError as err:
            return f"invoke failed: {err.message}"
    calls = tuple(functools.partial(ctx.step.run, sid, functools.partial(lambda v: v, j)) for j, (_, sid, _, _) in enumerate(op[1]))
    mode = sdk.ParallelMode.RACE if op[2] else sdk.ParallelMode.WAIT
    return list(ctx.group.parallel(calls, parallel_mode=mode))


def _resolve(op: dict[str, Any]) -> Any:
    if op["op"] == "WaitForEvent":
        # alternate between a matching event and a timeout, deterministically per step
        return {"name": "app/reply", "data": {"ok": True}, "id": "01R", "ts": 1} if int(op["id"], 16) % 2 else None
    if op["op"] == "InvokeFunction":
        if int(op["id"], 16) % 3 == 0:
            return {"error": {"name": "Error", "message": "could not find function with ID: prog-other"}}
        return {"data": {"echo": op["opts"]["payload"]["data"]}}
    raise AssertionError(op)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=program_st, use_async=st.booleans())
def test_random_programs(loop: asyncio.AbstractEventLoop, program: list[Any], use_async: bool) -> None:
    apps = []
    for sdk, fast_api in ((inngest, inngest.fast_api), (pyngest, pyngest.fast_api)):
        client, fn = build(sdk, program, use_async)
        app = fastapi.FastAPI()
        fast_api.serve(app, client, [fn])
        apps.append(ASGIClient(app, loop))
    t = simulate(apps[0], apps[1], "prog-p", [event(name="e")], resolve=_resolve, max_attempts=3, max_requests=200)
    assert t.final["status"] in (200, 500)
