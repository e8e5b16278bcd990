"""Differential: every scenario of ``test_differential`` run through pyngest's SDK twice, with
checkpointing (the request carries ``ctx.qi_id``; a fake server stores what the SDK reports,
as pyngest's does) and without (a request per step). Both runs must end alike: the same output
or error, the same memoized state, the same events sent — with fewer requests when
checkpointing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import fastapi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyngest
import pyngest.experimental.ai
import pyngest.fast_api

from . import scenarios
from . import test_differential_programs as programs
from .harness import ASGIClient, FakeAPI, advance, event, exec_body, normalize
from .test_differential import RUNS, _resolve


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(api: FakeAPI) -> Iterator[ASGIClient]:
    loop = asyncio.new_event_loop()
    client, fns = scenarios.build(pyngest, pyngest.experimental.ai, api_base_url=api.url,
                                  event_api_base_url=api.url, is_production=False)
    client._sleep_async = lambda s: asyncio.sleep(0)
    client._sleep_sync = lambda s: None
    served = fastapi.FastAPI()
    pyngest.fast_api.serve(served, client, list(fns.values()))
    yield ASGIClient(served, loop)
    loop.close()


def run(app: ASGIClient, api: FakeAPI, fn_id: str, *, checkpointing: bool, max_attempts: int,
        max_requests: int = 80, resolve: Callable[[dict[str, Any]], Any] = _resolve,
        events: list[dict[str, Any]] | None = None) -> tuple[Any, dict[str, Any], int, int]:
    """One whole run as a server that takes checkpoints would drive it: (how it ended, the
    memoized state, requests made, events sent)."""
    steps: dict[str, Any] = {}
    stack: list[str] = []
    planned: list[str] = []
    attempt, die, requests = 0, False, 0
    sent_before = len(api.events)
    events = events or [event(data={"id": 7})]

    def end(outcome: Any) -> tuple[Any, dict[str, Any], int, int]:
        return outcome, steps, requests, len(api.events) - sent_before

    while requests < max_requests:
        target = planned[0] if planned else "step"
        body = exec_body(events=events, steps=steps, stack=stack, attempt=attempt, max_attempts=max_attempts,
                         die=die, qi_id="qi-1" if checkpointing else None)
        api.checkpoints.clear()
        res = app.request("POST", f"/api/inngest?fnId={fn_id}&stepId={target}",
                          {"content-type": "application/json"}, body)
        requests += 1
        for _, _, reported in api.checkpoints:  # stored before the answer came
            for op in reported["steps"]:
                assert op["op"] == "StepRun", op
                steps[op["id"]] = {"data": op["data"]}
                stack.append(op["id"])
        no_retry = res.headers.get("x-inngest-no-retry") == "true"
        if res.status == 200:
            return end(("output", res.json()))
        if res.status != 206:
            if no_retry or attempt + 1 >= max_attempts:
                final = normalize(res)
                final.pop("times", None)  # clock readings (a Retry-After date), not the run's doing
                return end(("error", final))
            attempt += 1
            continue
        ops = res.json()
        if len(ops) > 1 and ops[-1]["op"] != "RunComplete":
            die = True
        retry = False
        final_error = no_retry or attempt + 1 >= max_attempts
        for op in ops:
            if op["op"] == "RunComplete":
                return end(("output", op["data"]))
            retry = advance(op, steps=steps, stack=stack, planned=planned, resolve=resolve,
                            final_error=final_error) or retry
        attempt = attempt + 1 if retry else 0
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize(("fn_id", "max_attempts"), RUNS)
def test_a_run_ends_alike_with_and_without_checkpointing(app: ASGIClient, api: FakeAPI, fn_id: str,
                                                         max_attempts: int) -> None:
    slug = f"diff-app-{fn_id}"
    with_it = run(app, api, slug, checkpointing=True, max_attempts=max_attempts)
    without = run(app, api, slug, checkpointing=False, max_attempts=max_attempts)
    assert with_it[0] == without[0], "the run ended differently"
    assert with_it[1] == without[1], "the memoized state differs"
    assert with_it[3] == without[3], "a different number of events was sent"
    assert with_it[2] <= without[2]


def test_checkpointing_saves_requests_where_steps_follow_each_other(app: ASGIClient, api: FakeAPI) -> None:
    with_it = run(app, api, "diff-app-steps", checkpointing=True, max_attempts=3)
    without = run(app, api, "diff-app-steps", checkpointing=False, max_attempts=3)
    assert with_it[2] < without[2]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=programs.program_st, use_async=st.booleans())
def test_random_programs_end_alike_with_and_without_checkpointing(api: FakeAPI, program: list[Any],
                                                                  use_async: bool) -> None:
    loop = asyncio.new_event_loop()
    try:
        client, fn = programs.build(pyngest, program, use_async, api_url=api.url)
        served = fastapi.FastAPI()
        pyngest.fast_api.serve(served, client, [fn])
        app = ASGIClient(served, loop)
        kw: dict[str, Any] = {"max_attempts": 3, "max_requests": 200, "resolve": programs._resolve,
                              "events": [event(name="e")]}
        with_it = run(app, api, "prog-p", checkpointing=True, **kw)
        without = run(app, api, "prog-p", checkpointing=False, **kw)
    finally:
        loop.close()
    assert with_it[0] == without[0] and with_it[1] == without[1]
    assert with_it[2] <= without[2]
