"""In-process testing (``mocked``), middleware lifecycle, pydantic, encryption middleware."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import typing
from collections.abc import Iterator
from typing import Any

import fastapi
import inngest_encryption
import nacl.encoding
import nacl.hash
import nacl.secret
import pydantic
import pytest

import pyngest as inngest
import pyngest.fast_api
from pyngest.experimental import mocked
from pyngest.experimental.encryption_middleware import EncryptionMiddleware

from .harness import ASGIClient, event, exec_body, h, simulate
from .official import inngest as official

# ------------------------------------------------------------------ mocked (docs: guides/testing)

client_mock = mocked.Inngest(app_id="test")
client = inngest.Inngest(app_id="my-app", is_production=False)


def create_message(name: object) -> str:
    return f"Hello, {name}!"


@client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="user.login"))
async def greet(ctx: inngest.Context, step: inngest.Step) -> str:
    message = await step.run("create-message", create_message, ctx.event.data["name"])
    return message


@client.create_function(fn_id="send-email", trigger=inngest.TriggerEvent(event="email.send"))
def send_email(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
    return "sent"


@client.create_function(fn_id="signup", trigger=inngest.TriggerEvent(event="user.signup"))
def signup(ctx: inngest.ContextSync, step: inngest.StepSync) -> bool:
    email_id = step.invoke("send-email", function=send_email)
    event = step.wait_for_event(
        "wait-for-reply",
        event="email.reply",
        if_exp=f"async.data.email_id == '{email_id}'",
        timeout=datetime.timedelta(days=1),
    )
    user_replied = event is not None
    return user_replied


def test_mocked_docs_examples() -> None:
    res = mocked.trigger(greet, inngest.Event(name="user.login", data={"name": "Alice"}), client_mock)
    assert res.status is mocked.Status.COMPLETED
    assert res.output == "Hello, Alice!"

    res = mocked.trigger(
        signup,
        inngest.Event(name="test"),
        client_mock,
        step_stubs={
            "send-email": "email-id-abc123",
            "wait-for-reply": inngest.Event(data={"text": "Sounds good!"}, name="email.reply"),
        },
    )
    assert res.status is mocked.Status.COMPLETED and res.output is True
    res = mocked.trigger(
        signup, inngest.Event(name="test"), client_mock,
        step_stubs={"send-email": "id", "wait-for-reply": mocked.Timeout},
    )
    assert res.output is False
    with pytest.raises(mocked.UnstubbedStepError, match="send-email"):
        mocked.trigger(signup, inngest.Event(name="test"), client_mock)


def test_mocked_matches_official_mocked_on_docs_example() -> None:
    oc = official.Inngest(app_id="my-app", is_production=False)

    @oc.create_function(fn_id="greet", trigger=official.TriggerEvent(event="user.login"))
    async def ogreet(ctx: Any) -> str:
        return await ctx.step.run("create-message", create_message, ctx.event.data["name"])

    omock = official.experimental.mocked
    ores = omock.trigger(ogreet, official.Event(name="user.login", data={"name": "Bob"}), omock.Inngest(app_id="t"))
    pres = mocked.trigger(greet, inngest.Event(name="user.login", data={"name": "Bob"}), client_mock)
    assert (ores.status.value, ores.output) == (pres.status.value, pres.output) == ("Completed", "Hello, Bob!")


def test_mocked_retries_sleeps_parallel_and_sends() -> None:
    calls: list[int] = []

    @client.create_function(fn_id="busy", trigger=inngest.TriggerEvent(event="e"), retries=2)
    async def busy(ctx: inngest.Context, step: inngest.Step) -> Any:
        def flaky() -> str:
            calls.append(ctx.attempt)
            if ctx.attempt < 2:
                raise ValueError("not yet")
            return "ok"

        a = await step.run("flaky", flaky)
        await step.sleep("week", datetime.timedelta(days=7))  # takes no time
        await step.sleep_until("later", datetime.datetime(2099, 1, 1))
        pair = await step.parallel((lambda: step.run("x", lambda: 1), lambda: step.run("y", lambda: 2)))
        ids = await step.send_event("send", [inngest.Event(name="a"), inngest.Event(name="b")])
        try:
            await step.run("doomed", lambda: 1 / 0)
        except inngest.StepError as err:
            doomed = err.name
        return {"a": a, "pair": list(pair), "ids": ids, "doomed": doomed}

    mock = mocked.Inngest(app_id="test")
    res = mocked.trigger(busy, inngest.Event(name="e"), mock)
    assert res.status is mocked.Status.COMPLETED, res.error
    assert res.output == {
        "a": "ok", "pair": [1, 2], "ids": [mocked.client.PLACEHOLDER_ID] * 2, "doomed": "ZeroDivisionError",
    }
    assert calls == [0, 1, 2]
    assert [e.name for e in mock.sent] == ["a", "b"]

    @client.create_function(fn_id="fails", trigger=inngest.TriggerEvent(event="e"), retries=1)
    async def fails(ctx: inngest.Context) -> None:
        raise RuntimeError("nope")

    res = mocked.trigger(fails, inngest.Event(name="e"), mock)
    assert res.status is mocked.Status.FAILED and isinstance(res.error, RuntimeError)

    @client.create_function(fn_id="stop", trigger=inngest.TriggerEvent(event="e"))
    async def stop(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("stop now")

    res = mocked.trigger(stop, inngest.Event(name="e"), mock)
    assert res.status is mocked.Status.FAILED and str(res.error) == "stop now"


def test_mocked_from_async_test() -> None:
    async def inside() -> Any:
        return mocked.trigger(greet, inngest.Event(name="user.login", data={"name": "Al"}), client_mock)

    assert asyncio.run(inside()).output == "Hello, Al!"


# ------------------------------------------------------------------ middleware lifecycle


def _recorder(sdk: Any, log: list[str]) -> Any:
    class Recorder(sdk.MiddlewareSync):  # type: ignore[misc, name-defined]
        def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
            log.append("transform_input")

        def before_memoization(self) -> None:
            log.append("before_memoization")

        def after_memoization(self) -> None:
            log.append("after_memoization")

        def before_execution(self) -> None:
            log.append("before_execution")

        def after_execution(self) -> None:
            log.append("after_execution")

        def transform_output(self, result: Any) -> None:
            log.append("transform_output")
            if result.has_output() and result.step is None:
                result.output = {"wrapped": result.output}

        def before_response(self) -> None:
            log.append("before_response")

    return Recorder


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _two_step_app(sdk: Any, fast_api: Any, loop: asyncio.AbstractEventLoop, log: list[str]) -> ASGIClient:
    c = sdk.Inngest(app_id="mw", is_production=False, middleware=[_recorder(sdk, log)])

    @c.create_function(fn_id="f", trigger=sdk.TriggerEvent(event="e"))
    async def f(ctx: Any) -> Any:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: 2)
        return a + b

    app = fastapi.FastAPI()
    fast_api.serve(app, c, [f])
    return ASGIClient(app, loop)


def test_middleware_lifecycle_matches_official(loop: asyncio.AbstractEventLoop) -> None:
    olog: list[str] = []
    plog: list[str] = []
    o = _two_step_app(official, official.fast_api, loop, olog)
    p = _two_step_app(inngest, pyngest.fast_api, loop, plog)
    t = simulate(o, p, "mw-f", [event(name="e")])
    assert t.final["body"] == {"wrapped": 3}
    # the official SDK (0.5.19) lacks the two memoization hooks the docs list
    assert [x for x in plog if "memoization" not in x] == olog
    per_request = [
        "transform_input", "before_memoization", "after_memoization", "before_execution",
        "after_execution", "transform_output", "before_response",
    ]
    assert plog == per_request * 3  # 2 steps + the function: "called 3 times"


def test_function_middleware_runs_after_client_middleware(loop: asyncio.AbstractEventLoop) -> None:
    order: list[str] = []

    def named(tag: str) -> Any:
        class M(inngest.Middleware):
            async def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
                order.append(tag)
                ctx.injected = [*getattr(ctx, "injected", []), tag]

        return M

    c = inngest.Inngest(app_id="order", is_production=False, middleware=[named("client-1"), named("client-2")])

    @c.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"), middleware=[named("fn")])
    async def f(ctx: Any) -> Any:
        return ctx.injected

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, c, [f])
    res = ASGIClient(app, loop).request("POST", "/api/inngest?fnId=order-f&stepId=step", {},
                                        exec_body(events=[event(name="e")], steps={}, stack=[]))
    assert res.json() == ["client-1", "client-2", "fn"]


def test_send_event_hooks(loop: asyncio.AbstractEventLoop) -> None:
    seen: list[Any] = []

    class M(inngest.MiddlewareSync):
        def before_send_events(self, events: list[inngest.Event]) -> None:
            seen.append([e.name for e in events])

        def after_send_events(self, result: inngest.SendEventsResult) -> None:
            seen.append(result.ids)

    mock = mocked.Inngest(app_id="t", middleware=[M])

    @mock.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    def f(ctx: inngest.ContextSync) -> Any:
        return ctx.step.send_event("s", inngest.Event(name="x"))

    assert mocked.trigger(f, inngest.Event(name="e"), mock).status is mocked.Status.COMPLETED
    assert seen == [["x"], [mocked.client.PLACEHOLDER_ID]]


# ------------------------------------------------------------------ pydantic (docs: guides/pydantic)

TEvent = typing.TypeVar("TEvent", bound="BaseEvent")


class BaseEvent(pydantic.BaseModel):
    data: pydantic.BaseModel
    id: str = ""
    name: typing.ClassVar[str]
    ts: int = 0

    @classmethod
    def from_event(cls: type[TEvent], event: inngest.Event) -> TEvent:
        return cls.model_validate(event.model_dump(mode="json"))

    def to_event(self) -> inngest.Event:
        return inngest.Event(name=self.name, data=self.data.model_dump(mode="json"), id=self.id, ts=self.ts)


class PostUpvotedEventData(pydantic.BaseModel):
    count: int


class PostUpvotedEvent(BaseEvent):
    data: PostUpvotedEventData
    name: typing.ClassVar[str] = "forum/post.upvoted"


class Result(pydantic.BaseModel):
    total: int


def test_pydantic_guide_and_serializer() -> None:
    ev = PostUpvotedEvent(data=PostUpvotedEventData(count=3)).to_event()
    assert ev.name == "forum/post.upvoted" and ev.data == {"count": 3}
    with pytest.raises(pydantic.ValidationError):
        PostUpvotedEvent(data=PostUpvotedEventData(count="bad data"))  # type: ignore[arg-type]

    mock = mocked.Inngest(app_id="pyd", serializer=inngest.PydanticSerializer())

    @mock.create_function(fn_id="up", trigger=inngest.TriggerEvent(event=PostUpvotedEvent.name), output_type=Result)
    def handle(ctx: inngest.ContextSync, step: inngest.StepSync) -> Result:
        event = PostUpvotedEvent.from_event(ctx.event)
        doubled = step.run("double", lambda: Result(total=event.data.count * 2), output_type=Result)
        assert isinstance(doubled, Result)  # deserialized back from the memo
        return Result(total=doubled.total + 1)

    res = mocked.trigger(handle, ev, mock)
    assert res.status is mocked.Status.COMPLETED and res.output == {"total": 7}


# ------------------------------------------------------------------ encryption middleware

KEY = "my-secret-key"


def test_encryption_format_is_libsodium_secretbox() -> None:
    mw = EncryptionMiddleware(mocked.Inngest(app_id="e"), None, KEY)
    enc = mw.encrypt({"secret": 1})
    assert enc["__ENCRYPTED__"] is True and enc["__STRATEGY__"] == "inngest/libsodium"
    # independently: BLAKE2b-derived key, secretbox with the nonce in front
    box = nacl.secret.SecretBox(nacl.hash.generichash(KEY.encode(), digest_size=32, encoder=nacl.encoding.RawEncoder))
    raw = base64.b64decode(enc["data"])
    assert json.loads(box.decrypt(raw[24:], raw[:24])) == {"secret": 1}
    assert mw.decrypt(enc) == {"secret": 1}
    assert mw.decrypt({"plain": True}) == {"plain": True}


def test_encryption_interoperates_with_official_middleware() -> None:
    ours = EncryptionMiddleware(mocked.Inngest(app_id="e"), None, KEY)
    theirs = inngest_encryption.EncryptionMiddleware(official.Inngest(app_id="e", is_production=False), None, KEY)
    assert theirs._decrypt(ours.encrypt({"a": [1, "b"]})) == {"a": [1, "b"]}
    assert ours.decrypt(theirs._encrypt({"c": None})) == {"c": None}


def test_encryption_end_to_end(loop: asyncio.AbstractEventLoop) -> None:
    c = inngest.Inngest(app_id="enc", is_production=False, middleware=[
        EncryptionMiddleware.factory("new-key", fallback_decryption_keys=[KEY]),
    ])
    seen: list[Any] = []

    @c.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> Any:
        seen.append(dict(ctx.event.data))
        a = await ctx.step.run("a", lambda: {"ssn": "123"})
        seen.append(a)
        return {"done": a["ssn"]}

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, c, [f])
    api = ASGIClient(app, loop)
    old = EncryptionMiddleware(mocked.Inngest(app_id="e"), None, KEY)
    ev = event(name="e", data={"encrypted": old.encrypt({"card": "4242"}), "plain": 1})
    res = api.request("POST", "/api/inngest?fnId=enc-f&stepId=step", {}, exec_body(events=[ev], steps={}, stack=[]))
    op = res.json()[0]
    assert op["data"]["__ENCRYPTED__"] is True  # the server never sees the step output
    assert seen[0] == {"encrypted": {"card": "4242"}, "plain": 1}
    res = api.request("POST", "/api/inngest?fnId=enc-f&stepId=step", {},
                      exec_body(events=[ev], steps={h("a"): {"data": op["data"]}}, stack=[h("a")]))
    assert res.status == 200 and res.json()["__ENCRYPTED__"] is True
    assert seen[-1] == {"ssn": "123"}
    newer = EncryptionMiddleware(mocked.Inngest(app_id="e"), None, "new-key")
    assert newer.decrypt(res.json()) == {"done": "123"}
    # decrypt-only mode passes outputs through in plaintext
    plain = EncryptionMiddleware(mocked.Inngest(app_id="e"), None, KEY, decrypt_only=True)
    from pyngest.sdk.middleware import TransformOutputResult

    r = TransformOutputResult(error=None, output={"x": 1}, step=None)
    plain.transform_output(r)
    assert r.output == {"x": 1}
    with pytest.raises(ValueError, match="no key"):
        EncryptionMiddleware(mocked.Inngest(app_id="e"), None, "wrong").decrypt(old.encrypt(1))


def test_encrypts_sent_events() -> None:
    from .harness import FakeAPI

    api = FakeAPI()
    try:
        c = inngest.Inngest(app_id="e", is_production=False, event_api_base_url=api.url,
                            middleware=[EncryptionMiddleware.factory(KEY)])
        c.send_sync(inngest.Event(name="x", data={"encrypted": {"pii": 1}, "other": 2}))
        sent = api.events[-1][2][0]["data"]
    finally:
        api.close()
    assert sent["other"] == 2 and sent["encrypted"]["__ENCRYPTED__"] is True
    assert EncryptionMiddleware(c, None, KEY).decrypt(sent["encrypted"]) == {"pii": 1}
