"""The documented Python examples (reference__python__*, the quick start, the guides), written
out with ``import pyngest as inngest`` and run in process with ``mocked`` (the examples that
need a real server are in tests/integration/sdk)."""

from __future__ import annotations

import asyncio
import datetime
import functools
import os
import typing
from typing import Any

import pytest

import pyngest as inngest
from pyngest.errors import NonRetriableError
from pyngest.experimental import mocked

from .harness import FakeAPI

inngest_client = mocked.Inngest(app_id="docs")


def _ok(fn: Any, ev: inngest.Event | None = None, **kw: Any) -> Any:
    res = mocked.trigger(fn, ev or inngest.Event(name="app/my_function", data={"user_id": "u1"}), inngest_client, **kw)
    assert res.status is mocked.Status.COMPLETED, res.error
    return res.output


def test_functions_create_triggers() -> None:
    @inngest_client.create_function(
        fn_id="import-product-images",
        trigger=[
            inngest.TriggerEvent(event="shop/product.imported"),
            inngest.TriggerEvent(event="shop/product.updated"),
        ],
    )
    async def fn(ctx: inngest.Context, step: inngest.Step) -> None:
        pass

    (cfg,) = fn.get_config("http://app/api/inngest")
    assert cfg["triggers"] == [{"event": "shop/product.imported"}, {"event": "shop/product.updated"}]
    assert cfg["id"] == "docs-import-product-images"

    @inngest_client.create_function(
        fn_id="resync-user-data",
        trigger=[
            inngest.TriggerEvent(event="user.created"),
            inngest.TriggerEvent(event="user.updated"),
            inngest.TriggerCron(cron="0 5 * * *"),
        ],
    )
    def my_handler(ctx: inngest.Context) -> None:
        pass

    assert my_handler.get_config("http://a")[0]["triggers"][2] == {"cron": "0 5 * * *"}

    @inngest_client.create_function(
        fn_id="sync-systems",
        trigger=inngest.TriggerEvent(event="auto/sync.request"),
        throttle=inngest.Throttle(count=2, period=datetime.timedelta(minutes=1)),
    )
    def sync_systems(ctx: inngest.Context, step: inngest.StepSync) -> None:
        pass

    assert sync_systems.get_config("http://a")[0]["throttle"] == {"limit": 2, "period": "1m", "burst": 1}

    # "If your function is not async then its type is SyncStep."
    @inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="app/my_function"))
    def plain(ctx: inngest.Context, step: inngest.SyncStep) -> int:
        return step.run("one", lambda: 1)

    assert _ok(plain) == 1 and inngest.SyncStep is inngest.StepSync


def test_steps_run() -> None:
    called: list[Any] = []

    async def my_fn() -> None:
        called.append("my_fn")

    async def my_fn_with_args(a: int, b: str) -> None:
        called.append((a, b))

    async def my_fn_with_args_and_kwargs(a: int, *, b: str) -> None:
        called.append((a, b))

    @inngest_client.create_function(fn_id="my_function", trigger=inngest.TriggerEvent(event="app/my_function"))
    async def fn(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.run("my_fn", my_fn)
        await step.run("my_fn_with_args", my_fn_with_args, 1, "a")
        await step.run("my_fn_with_args_and_kwargs", functools.partial(my_fn_with_args_and_kwargs, 1, b="a"))

        def use_scoped_variable() -> None:
            called.append(ctx.event.data["user_id"])

        await step.run("use_scoped_variable", use_scoped_variable)

    _ok(fn)
    assert called == ["my_fn", (1, "a"), (1, "a"), "u1"]


def test_steps_send_sleep_wait() -> None:
    @inngest_client.create_function(fn_id="send", trigger=inngest.TriggerEvent(event="app/my_function"))
    async def send(ctx: inngest.Context, step: inngest.Step) -> list[str]:
        return await step.send_event("send", inngest.Event(name="foo"))

    assert _ok(send) == [mocked.client.PLACEHOLDER_ID]

    @inngest_client.create_function(fn_id="sleeps", trigger=inngest.TriggerEvent(event="app/my_function"))
    async def sleeps(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.sleep("zzz", datetime.timedelta(seconds=2))
        await step.sleep_until("zzz", datetime.datetime.now() + datetime.timedelta(seconds=2))

    assert _ok(sleeps) is None

    @inngest_client.create_function(fn_id="waits", trigger=inngest.TriggerEvent(event="app/my_function"))
    async def waits(ctx: inngest.Context, step: inngest.Step) -> Any:
        res = await step.wait_for_event("wait", event="app/wait_for_event.fulfill", timeout=datetime.timedelta(seconds=2))
        return res and res.name

    assert _ok(waits, step_stubs={"wait": inngest.Event(name="app/wait_for_event.fulfill")}) == "app/wait_for_event.fulfill"
    assert _ok(waits, step_stubs={"wait": mocked.Timeout}) is None


def test_steps_invoke_and_parallel() -> None:
    @inngest_client.create_function(fn_id="fn-1", trigger=inngest.TriggerEvent(event="app/fn-1"))
    async def fn_1(ctx: inngest.Context, step: inngest.Step) -> str:
        return "Hello!"

    @inngest_client.create_function(fn_id="fn-2", trigger=inngest.TriggerEvent(event="app/fn-2"))
    async def fn_2(ctx: inngest.Context, step: inngest.Step) -> Any:
        output = await step.invoke("invoke", function=fn_1)
        by_id = await step.invoke_by_id("invoke-by-id", function_id="fn-1")
        return [output, by_id]

    assert _ok(fn_2, step_stubs={"invoke": "Hello!", "invoke-by-id": "Hello!"}) == ["Hello!", "Hello!"]

    async def update_user(user_id: str) -> bool:
        return True

    async def send_email(user_id: str) -> str:
        return f"mail:{user_id}"

    @inngest_client.create_function(fn_id="my-function", trigger=inngest.TriggerEvent(event="my-event"))
    async def fn(ctx: inngest.Context, step: inngest.Step) -> Any:
        user_id = ctx.event.data["user_id"]
        (updated_user, sent_email) = await step.parallel(
            (
                lambda: step.run("update-user", update_user, user_id),
                lambda: step.run("send-email", send_email, user_id),
            )
        )
        parallel_steps = tuple[typing.Callable[[], typing.Awaitable[bool]]]()
        for uid in ctx.event.data["user_ids"]:
            parallel_steps += tuple([functools.partial(step.run, f"get-user-{uid}", functools.partial(update_user, uid))])
        updated_users = await step.parallel(parallel_steps)
        return [updated_user, sent_email, list(updated_users)]

    ev = inngest.Event(name="my-event", data={"user_id": "u7", "user_ids": ["a", "b", "c"]})
    assert _ok(fn, ev) == [True, "mail:u7", [True, True, True]]


def test_client_send(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeAPI()
    try:
        monkeypatch.setenv("INNGEST_DEV", "1")
        monkeypatch.setenv("INNGEST_BASE_URL", api.url)
        inngest_client = inngest.Inngest(app_id="my_app")

        async def sends() -> list[Any]:
            ids = await inngest_client.send(inngest.Event(name="my_event", data={"msg": "Hello!"}))
            many = await inngest_client.send(
                [
                    inngest.Event(name="my_event", data={"msg": "Hello!"}),
                    inngest.Event(name="my_other_event", data={"name": "Alice"}),
                ]
            )
            # dev-server page: keyword form
            kw = await inngest_client.send(name="user.avatar.uploaded", data={"url": "https://bucket/..."})
            return [ids, many, kw]

        ids, many, kw = asyncio.run(sends())
        sync_ids = inngest_client.send_sync(inngest.Event(name="my_event", data={"msg": "Hello!"}))
        assert len(ids) == 1 and len(many) == 2 and len(kw) == 1 and sync_ids == ids
        assert [e[2][0]["name"] for e in api.events] == ["my_event", "my_event", "user.avatar.uploaded", "my_event"]
    finally:
        api.close()


def test_middleware_overview(capsys: pytest.CaptureFixture[str]) -> None:
    class MyMiddleware(inngest.Middleware):
        async def before_send_events(self, events: list[inngest.Event]) -> None:
            print(f"Sending {len(events)} events")

        async def after_send_events(self, result: inngest.SendEventsResult) -> None:
            print("Done sending events")

    api = FakeAPI()
    try:
        client = inngest.Inngest(app_id="my_app", middleware=[MyMiddleware], is_production=False,
                                 event_api_base_url=api.url)
        asyncio.run(client.send([inngest.Event(name="a"), inngest.Event(name="b")]))
    finally:
        api.close()
    assert capsys.readouterr().out == "Sending 2 events\nDone sending events\n"


def test_dependency_injection() -> None:
    class FakeOpenAI:
        def complete(self, prompt: str) -> str:
            return prompt.upper()

    class OpenAIMiddleware(inngest.Middleware):
        def __init__(self, client: inngest.Inngest, raw_request: object) -> None:
            self.openai = FakeOpenAI()

        def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
            ctx.openai = self.openai

    client = mocked.Inngest(app_id="my_app", middleware=[OpenAIMiddleware])

    @client.create_function(fn_id="user-create", trigger=inngest.TriggerEvent(event="app/user.create"))
    async def fn(ctx: inngest.Context, step: inngest.Step) -> str:
        return ctx.openai.complete("say this is a test")  # type: ignore[attr-defined, no-any-return]

    assert mocked.trigger(fn, inngest.Event(name="app/user.create"), client).output == "SAY THIS IS A TEST"


def test_prod_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_ENV", "development")
    assert not inngest.Inngest(app_id="my_flask_app", is_production=os.environ.get("FLASK_ENV") == "production").is_production


def test_errors_pages() -> None:
    class MyError(Exception):
        pass

    @inngest_client.create_function(fn_id="import-item-data", retries=0, trigger=inngest.TriggerEvent(event="store/import.requested"))
    async def fn_async(ctx: inngest.Context, step: inngest.Step) -> None:
        def foo() -> None:
            raise ValueError("foo")

        try:
            await step.run("foo", foo)
        except inngest.StepError:
            raise MyError("I am new") from None

    res = mocked.trigger(fn_async, inngest.Event(name="store/import.requested"), inngest_client)
    assert res.status is mocked.Status.FAILED and isinstance(res.error, MyError)

    @inngest_client.create_function(fn_id="non-retriable", trigger=inngest.TriggerEvent(event="x"))
    async def non_retriable(ctx: inngest.Context, step: inngest.Step) -> None:
        def step_1() -> None:
            raise inngest.NonRetriableError("non-retriable-step-error")

        await step.run("step_1", step_1)

    res = mocked.trigger(non_retriable, inngest.Event(name="x"), inngest_client)
    assert res.status is mocked.Status.FAILED and str(res.error) == "non-retriable-step-error"

    class UserNotFoundError(Exception):
        pass

    def find_one(user_id: str) -> Any:
        raise UserNotFoundError(user_id)

    @inngest_client.create_function(fn_id="user-weekly-digest", trigger=inngest.TriggerEvent(event="user/weekly.digest.requested"))
    def user_weekly_digest(ctx: inngest.Context, step: inngest.StepSync) -> None:
        try:
            step.run("get-user-email", find_one, ctx.event.data["userId"])
        except Exception as err:
            if err.name == "UserNotFoundError":  # type: ignore[attr-defined]
                raise NonRetriableError("User no longer exists; stopping") from None
            raise

    res = mocked.trigger(user_weekly_digest, inngest.Event(name="user/weekly.digest.requested", data={"userId": "u"}), inngest_client)
    assert res.status is mocked.Status.FAILED and str(res.error) == "User no longer exists; stopping"


def test_rollbacks() -> None:
    log: list[str] = []

    @inngest_client.create_function(fn_id="add-data", trigger=inngest.TriggerEvent(event="app/row.data.added"))
    def add_data(ctx: inngest.Context, step: inngest.StepSync) -> None:
        try:  # noqa: SIM105 - as the docs write it
            step.run("Non-critical step", lambda: 1 / 0)
        except Exception:
            pass
        try:
            step.run("Create row", lambda: [][0])
        except Exception:
            step.run("Rollback row creation", lambda: log.append(f"removed {ctx.event.data['rowId']}"))

    _ok(add_data, inngest.Event(name="app/row.data.added", data={"rowId": 9}))
    assert log == ["removed 9"]


def test_batching_and_cancellation_config() -> None:
    @inngest_client.create_function(
        fn_id="record-api-calls",
        trigger=inngest.TriggerEvent(event="log/api.call"),
        batch_events=inngest.Batch(max_size=100, timeout=datetime.timedelta(seconds=5), key="event.data.user_id"),
    )
    async def record_api_calls(ctx: inngest.Context, step: inngest.Step) -> Any:
        attrs = [{"user_id": evt.data["user_id"], "endpoint": evt.data["endpoint"]} for evt in ctx.events]

        async def record_data() -> Any:
            return attrs

        result = await step.run("record-data-to-db", record_data)
        return {"success": True, "recorded": len(result)}

    batch = [inngest.Event(name="log/api.call", data={"user_id": 1, "endpoint": f"/e{i}"}) for i in range(3)]
    assert mocked.trigger(record_api_calls, batch, inngest_client).output == {"success": True, "recorded": 3}
    assert record_api_calls.get_config("http://a")[0]["batchEvents"] == {"maxSize": 100, "timeout": "5s", "key": "event.data.user_id"}

    @inngest_client.create_function(
        fn_id="schedule-reminder",
        trigger=inngest.TriggerEvent(event="tasks/reminder.created"),
        cancel=[inngest.Cancel(event="tasks/reminder.deleted", if_exp="async.data.reminderId == event.data.reminderId")],
    )
    async def fn(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.sleep_until("sleep-until-remind-at-time", ctx.event.data["remind_at"])
        await step.run("send-reminder-push", lambda: None)

    assert fn.get_config("http://a")[0]["cancel"] == [
        {"event": "tasks/reminder.deleted", "if": "async.data.reminderId == event.data.reminderId"}
    ]
    _ok(fn, inngest.Event(name="tasks/reminder.created", data={"remind_at": "2030-01-01T00:00:00Z", "reminderId": 1}))


def test_guide_spellings() -> None:
    """Spellings some guide pages use: ``inngest.Trigger``, ``create_function(event=...)``,
    ``create_function(id=...)``, ``Inngest(id=...)``, dict events."""
    client = mocked.Inngest(id="signup-flow")
    assert client.app_id == "signup-flow"

    @client.create_function(fn_id="send-delayed-email", trigger=inngest.Trigger(event="app/user.signup"))
    async def a(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.sleep("wait-a-couple-of-days", datetime.timedelta(days=2))

    @client.create_function(fn_id="import-product-images", event="shop/product.imported")
    async def b(ctx: inngest.Context, step: inngest.Step) -> list[str]:
        events = [{"name": "x", "data": {}}, {"name": "y", "data": {"k": 1}}]
        return await step.send_event("send-example-events", events)

    # guides__working-with-loops, learn__inngest-functions: create_function(id=...)
    @client.create_function(id="simple-function", trigger=inngest.TriggerEvent(event="test/simple.function"))
    async def simple_function(ctx: inngest.Context, step: inngest.Step) -> list[str]:
        return [await step.run(s, lambda s=s: s) for s in ("hello", "a", "b", "c")]

    assert simple_function.id == "signup-flow-simple-function"
    assert mocked.trigger(simple_function, inngest.Event(name="test/simple.function"), client).output == ["hello", "a", "b", "c"]
    assert mocked.trigger(a, inngest.Event(name="app/user.signup"), client).status is mocked.Status.COMPLETED
    assert b.get_config("http://a")[0]["triggers"] == [{"event": "shop/product.imported"}]
    assert mocked.trigger(b, inngest.Event(name="shop/product.imported"), client).output == [mocked.client.PLACEHOLDER_ID] * 2
