"""Checkpointing on the wire (PROTOCOL.md §3.8, §9.3): what the SDK reports to a (fake) server's
checkpoint API and what it answers the execution request with, in every case where it must
stop and answer the classic way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import fastapi
import pytest

import pyngest as inngest
import pyngest.fast_api
from tests.unit.sdk.harness import FakeAPI, HTTPResult, asgi_call, event, exec_body, h

RUN = "01HRUNRUNRUNRUNRUNRUNRUNRU"


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.close()


_CLIENTS: list[inngest.Inngest] = []


def _app(api: FakeAPI, ran: list[str], *, sync: bool = False, **kw: Any) -> Any:
    client = inngest.Inngest(app_id="cp", is_production=False, api_base_url=api.url, event_api_base_url=api.url, **kw)
    _CLIENTS.append(client)
    client._sleep_async = lambda s: asyncio.sleep(0)  # no real backoff between retried checkpoints
    client._sleep_sync = lambda s: None

    def body(name: str) -> str:
        ran.append(name)
        return name.upper()

    if sync:
        @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
        def three_sync(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[str]:
            return [step.run(n, body, n) for n in ("a", "b", "c")]

        fns = [three_sync]
    else:
        @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
        async def three(ctx: inngest.Context, step: inngest.Step) -> list[str]:
            out = [await step.run(n, body, n) for n in ("a", "b")]
            if ctx.event.data.get("nap"):
                await step.sleep("nap", 60_000)
            return [*out, await step.run("c", body, "c")]

        fns = [three]
    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, fns)
    return app


def _post(app: Any, steps: dict[str, Any] | None = None, *, qi_id: str | None = "qi-1", attempt: int = 0,
          data: dict[str, Any] | None = None, target: str = "step") -> HTTPResult:
    body = exec_body(events=[event(name="e", data=data or {})], steps=steps or {}, stack=list(steps or {}),
                     attempt=attempt, qi_id=qi_id)
    return asyncio.run(asgi_call(app, "POST", f"/api/inngest?fnId=cp-three&stepId={target}",
                                 {"content-type": "application/json"}, body))


def _reported(api: FakeAPI) -> list[str]:
    return [op["displayName"] for _, _, b in api.checkpoints for op in b["steps"]]


@pytest.mark.parametrize("sync", [False, True])
def test_steps_are_reported_one_by_one_and_the_last_rides_with_the_return(api: FakeAPI, sync: bool) -> None:
    ran: list[str] = []
    res = _post(_app(api, ran, sync=sync))
    assert ran == ["a", "b", "c"]
    assert _reported(api) == ["a", "b"]
    path, headers, first = api.checkpoints[0]
    assert path == f"/v1/checkpoint/{RUN}/async"
    assert headers["content-type"] == "application/json"
    assert {k: first[k] for k in ("run_id", "fn_id", "qi_id", "generation_id")} == {
        "run_id": RUN, "fn_id": "7b4bd3e6-9c3e-4e1e-b2fc-3f2b6d0d2a10", "qi_id": "qi-1", "generation_id": 7}
    assert first["steps"] == [{"displayName": "a", "id": h("a"), "name": "a", "op": "StepRun", "opts": None,
                               "userland": {"id": "a", "index": None}, "data": "A"}]
    assert res.status == 206
    last, complete = res.json()
    assert (last["op"], last["id"], last["data"]) == ("StepRun", h("c"), "C")
    assert (complete["op"], complete["id"], complete["data"]) == ("RunComplete", h("complete"), ["A", "B", "C"])


def test_without_a_queue_item_id_or_on_a_retry_or_a_planned_step_the_answer_is_classic(api: FakeAPI) -> None:
    for kw in ({"qi_id": None}, {"attempt": 1}, {"target": h("a")}):
        ran: list[str] = []
        res = _post(_app(api, ran), **kw)  # type: ignore[arg-type]
        assert ran == ["a"] and res.status == 206
        assert [op["op"] for op in res.json()] == ["StepRun"]
    assert api.checkpoints == []


def test_turned_off_by_option_or_environment(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    assert _post(_app(api, ran, checkpointing=False)).status == 206 and ran == ["a"]
    monkeypatch.setenv("INNGEST_CHECKPOINTING", "0")
    assert _post(_app(api, ran)).status == 206 and ran == ["a", "a"]
    # an explicit option wins over the environment
    assert _post(_app(api, ran, checkpointing=inngest.Checkpointing(max_runtime=60_000))).json()[-1]["op"] == "RunComplete"
    assert api.checkpoints and _reported(api) == ["a", "b"]


def test_a_sleep_ends_the_request_after_the_step_before_it_is_stored(api: FakeAPI) -> None:
    ran: list[str] = []
    res = _post(_app(api, ran), data={"nap": True})
    assert ran == ["a", "b"]
    assert _reported(api) == ["a", "b"]
    assert [op["op"] for op in res.json()] == ["Sleep"]


@pytest.mark.parametrize(("status", "reported"), [(409, []), (400, []), (404, [])])
def test_a_refused_checkpoint_gets_the_classic_answer_for_its_step(api: FakeAPI, status: int, reported: list[str]) -> None:
    ran: list[str] = []
    api.checkpoint_statuses = [status]
    res = _post(_app(api, ran))
    assert ran == ["a"], "no step runs before the one before it is stored"
    assert _reported(api) == reported
    assert res.status == 206 and [(op["op"], op["data"]) for op in res.json()] == [("StepRun", "A")]


def test_server_errors_are_retried(api: FakeAPI) -> None:
    ran: list[str] = []
    api.checkpoint_statuses = [503, 500]
    res = _post(_app(api, ran))
    assert ran == ["a", "b", "c"] and _reported(api) == ["a", "b"]
    assert res.json()[-1]["op"] == "RunComplete"


def test_the_time_budget_ends_the_request(api: FakeAPI) -> None:
    ran: list[str] = []
    client_app = _app(api, ran, checkpointing=inngest.Checkpointing(max_runtime=10_000))
    client = _CLIENTS[-1]
    ticks = iter(range(0, 100, 6))  # each look at the clock: 6 s later
    client._monotonic = lambda: float(next(ticks))
    res = _post(client_app)
    # 0 s: the request starts (budget to 10 s); 6 s: after a, go on; 12 s: after b, time is up
    assert ran == ["a", "b"] and _reported(api) == ["a"]
    assert [(op["op"], op["data"]) for op in res.json()] == [("StepRun", "B")]


def test_memoized_steps_replay_and_checkpointing_goes_on_after_them(api: FakeAPI) -> None:
    ran: list[str] = []
    res = _post(_app(api, ran), steps={h("a"): {"data": "A"}})
    assert ran == ["b", "c"] and _reported(api) == ["b"]
    assert res.json()[-1]["data"] == ["A", "B", "C"]


def test_an_output_over_the_servers_limit_is_left_to_the_classic_answer(api: FakeAPI) -> None:
    client = inngest.Inngest(app_id="cp", is_production=False, api_base_url=api.url, event_api_base_url=api.url)

    @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
    async def big(ctx: inngest.Context, step: inngest.Step) -> int:
        return len(await step.run("big", lambda: "x" * (4 * 1024 * 1024)))

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [big])
    res = _post(app)
    assert api.checkpoints == []
    assert [op["op"] for op in res.json()] == ["StepRun"]  # the server fails it: output_too_large


def test_a_return_that_cannot_be_sent_does_not_take_the_step_before_it_down(api: FakeAPI) -> None:
    client = inngest.Inngest(app_id="cp", is_production=False, api_base_url=api.url, event_api_base_url=api.url)
    ran: list[str] = []

    @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
    async def bad_return(ctx: inngest.Context, step: inngest.Step) -> Any:
        await step.run("a", lambda: ran.append("a"))
        return {1, 2}  # a set: not JSON

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [bad_return])
    res = _post(app)
    assert ran == ["a"] and _reported(api) == ["a"], "the step is stored before the error answer"
    assert res.status == 500 and res.json()["code"] == "output_unserializable"


def _counting_app(api: FakeAPI, calls: list[str], **kw: Any) -> Any:
    client = inngest.Inngest(app_id="cp", is_production=False, api_base_url=api.url, event_api_base_url=api.url, **kw)

    @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
    async def shapes(ctx: inngest.Context, step: inngest.Step) -> list[Any]:
        calls.append("handler")  # code outside steps
        first = await step.run("tuple", lambda: (1, 2.0, {"b": 1, "a": 2}))
        second = await step.run("again", lambda: "x")
        return [first, list(first[2]), type(first[1]).__name__, second]

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [shapes])
    return app


class _Hooks(inngest.Middleware):
    seen: list[str] = []

    async def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        self.seen.append("transform_input")


def test_without_middleware_the_handler_goes_on_after_a_step_with_the_value_a_replay_would_see(api: FakeAPI) -> None:
    """No replay per step: the handler is called once, and each step's value is its memo (the
    server's canonical JSON read back: a tuple is a list, 2.0 is 2, keys sorted)."""
    calls: list[str] = []
    res = _post(_counting_app(api, calls))
    assert calls == ["handler"]
    assert _reported(api) == ["tuple"]
    expected = [[1, 2, {"a": 2, "b": 1}], ["a", "b"], "int", "x"]
    assert res.json()[-1]["data"] == expected
    # the same as the classic protocol, one request per step
    classic: list[str] = []
    app = _counting_app(api, classic, checkpointing=False)
    first = _post(app).json()[0]
    second = _post(app, steps={first["id"]: {"data": first["data"]}}).json()[0]
    done = _post(app, steps={first["id"]: {"data": first["data"]}, second["id"]: {"data": second["data"]}})
    assert done.status == 200 and done.json() == expected


def test_with_middleware_each_step_replays_the_handler_so_hooks_run_as_without_checkpointing(api: FakeAPI) -> None:
    calls: list[str] = []
    _Hooks.seen = []
    res = _post(_counting_app(api, calls, middleware=[_Hooks]))
    assert calls == ["handler"] * 3 and _Hooks.seen == ["transform_input"] * 3
    assert res.json()[-1]["data"] == [[1, 2, {"a": 2, "b": 1}], ["a", "b"], "int", "x"]


def test_a_plain_function_goes_on_after_a_step_too(api: FakeAPI) -> None:
    client = inngest.Inngest(app_id="cp", is_production=False, api_base_url=api.url, event_api_base_url=api.url)
    calls: list[str] = []

    @client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="e"))
    def plain(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[Any]:
        calls.append("handler")
        first = step.run("tuple", lambda: (1, 2.0))
        return [first, step.run("again", lambda: "x")]

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [plain])
    res = _post(app)
    assert calls == ["handler"] and _reported(api) == ["tuple"]
    assert res.json()[-1]["data"] == [[1, 2], "x"]
