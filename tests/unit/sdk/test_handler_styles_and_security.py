"""pyngest-only behaviour of the serve handler: both handler styles, signature age and key
rotation, send retries and the event-id seed, environment configuration."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

import fastapi
import pytest

import pyngest as inngest
import pyngest.fast_api
from pyngest.protocol import signing
from pyngest.sdk import config, errors

from .harness import (
    FALLBACK_KEY,
    SIGNING_KEY,
    ASGIClient,
    FakeAPI,
    event,
    exec_body,
    signed_headers,
    simulate,
)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _serve(client: inngest.Inngest, fns: list[Any], loop: asyncio.AbstractEventLoop, **kw: Any) -> ASGIClient:
    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, fns, **kw)
    return ASGIClient(app, loop)


def test_ctx_step_style_equals_ctx_only_style(loop: asyncio.AbstractEventLoop) -> None:
    """``(ctx, step)`` with ``step.parallel`` (the docs) answers exactly like ``ctx`` alone with
    ``ctx.step`` / ``ctx.group`` (the newest official SDK)."""
    a = inngest.Inngest(app_id="styles", is_production=False)
    b = inngest.Inngest(app_id="styles", is_production=False)

    @a.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def docs_style(ctx: inngest.Context, step: inngest.Step) -> Any:
        x = await step.run("x", lambda: 1)
        pair = await step.parallel((lambda: step.run("p", lambda: 2), lambda: step.run("q", lambda: 3)))
        await step.sleep("s", datetime.timedelta(seconds=1))
        return [x, *pair]

    @b.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def new_style(ctx: inngest.Context) -> Any:
        x = await ctx.step.run("x", lambda: 1)
        pair = await ctx.group.parallel((lambda: ctx.step.run("p", lambda: 2), lambda: ctx.step.run("q", lambda: 3)))
        await ctx.step.sleep("s", datetime.timedelta(seconds=1))
        return [x, *pair]

    @a.create_function(fn_id="g", trigger=inngest.TriggerEvent(event="e"))
    def docs_sync(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return list(step.parallel((lambda: step.run("p", lambda: 2), lambda: step.run("q", lambda: 3))))

    @b.create_function(fn_id="g", trigger=inngest.TriggerEvent(event="e"))
    def new_sync(ctx: inngest.ContextSync) -> Any:
        return list(ctx.group.parallel((lambda: ctx.step.run("p", lambda: 2), lambda: ctx.step.run("q", lambda: 3))))

    pa, pb = _serve(a, [docs_style, docs_sync], loop), _serve(b, [new_style, new_sync], loop)
    t = simulate(pa, pb, "styles-f", [event(name="e")])
    assert t.final["body"] == [1, 2, 3]
    t = simulate(pa, pb, "styles-g", [event(name="e")])
    assert t.final["body"] == [2, 3]


def _signed_app(loop: asyncio.AbstractEventLoop, **client_kw: Any) -> tuple[ASGIClient, Any]:
    client = inngest.Inngest(app_id="sig", is_production=True, **client_kw)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> str:
        return "ok"

    app = fastapi.FastAPI()
    pyngest.fast_api.serve(app, client, [f])
    return ASGIClient(app, loop), app


def test_signature_age_window(loop: asyncio.AbstractEventLoop) -> None:
    """Signatures older or newer than 5 minutes are refused (as the JS and Go SDKs do; the
    official Python SDK 0.5.19 does not check the age)."""
    app, _ = _signed_app(loop, signing_key=SIGNING_KEY)
    body = exec_body(events=[event(name="e")], steps={}, stack=[])
    path = "/api/inngest?fnId=sig-f&stepId=step"
    now = int(datetime.datetime.now().timestamp())
    assert app.request("POST", path, signed_headers(body, t=now - 60), body).status == 200
    assert app.request("POST", path, signed_headers(body, t=now - 301), body).status == 401
    assert app.request("POST", path, signed_headers(body, t=now + 301), body).status == 401


def test_fallback_key_rotation(loop: asyncio.AbstractEventLoop) -> None:
    app, _ = _signed_app(loop, signing_key=SIGNING_KEY, signing_key_fallback=FALLBACK_KEY)
    body = exec_body(events=[event(name="e")], steps={}, stack=[])
    path = "/api/inngest?fnId=sig-f&stepId=step"
    res = app.request("POST", path, signed_headers(body, FALLBACK_KEY), body)
    assert res.status == 200
    # the response is signed with the key that verified the request
    assert signing.verify(res.body, res.headers["x-inngest-signature"], [FALLBACK_KEY]) == FALLBACK_KEY
    with pytest.raises(signing.SignatureError):
        signing.verify(res.body, res.headers["x-inngest-signature"], [SIGNING_KEY])
    assert app.request("POST", path, signed_headers(body, "signkey-prod-" + "99" * 32), body).status == 401


def test_signed_introspection_hashes(loop: asyncio.AbstractEventLoop) -> None:
    app, _ = _signed_app(loop, signing_key=SIGNING_KEY, signing_key_fallback=FALLBACK_KEY, event_key="ek")
    got = app.request("GET", "/api/inngest", signed_headers(b"")).json()
    assert got["authentication_succeeded"] is True
    assert got["signing_key_hash"] == signing.hash_signing_key(SIGNING_KEY)
    assert got["signing_key_fallback_hash"] == signing.hash_signing_key(FALLBACK_KEY)
    assert got["event_key_hash"] == signing.hash_event_key("ek")
    assert got["sdk_language"] == "py" and got["framework"] == "fast_api"


def test_production_mode_without_signing_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNGEST_SIGNING_KEY", raising=False)
    monkeypatch.delenv("INNGEST_DEV", raising=False)
    client = inngest.Inngest(app_id="nokey")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> None:
        return None

    with pytest.raises(errors.SigningKeyMissingError, match="INNGEST_SIGNING_KEY.*INNGEST_DEV=1"):
        pyngest.fast_api.serve(fastapi.FastAPI(), client, [f])


def test_invalid_signing_key_is_refused_early() -> None:
    with pytest.raises(errors.SigningKeyMissingError, match="not a valid signing key"):
        inngest.Inngest(app_id="x", signing_key="signkey-prod-not-hex")


def test_send_retries_5xx_with_one_seed(api: FakeAPI, loop: asyncio.AbstractEventLoop) -> None:
    client = inngest.Inngest(app_id="s", is_production=False, event_api_base_url=api.url)
    slept: list[float] = []

    async def no_sleep(s: float) -> None:
        slept.append(s)

    client._sleep_async = no_sleep
    api.events.clear()
    api.fail_next[:] = [500, 502]
    ids = loop.run_until_complete(client.send([inngest.Event(name="app/x", data={"a": 1}), inngest.Event(name="app/y")]))
    assert len(ids) == 2 and len(slept) == 2 and slept[1] > slept[0]
    (path, headers, body), = api.events
    assert path == "/e/NO_EVENT_KEY_SET"
    assert headers["x-inngest-sdk"].startswith("pyngest-py:v")
    ms, _, entropy = headers["x-inngest-event-id-seed"].partition(",")
    assert int(ms) > 0 and len(entropy) == 16
    assert [e["name"] for e in body] == ["app/x", "app/y"] and all("id" not in e and e["ts"] > 0 for e in body)


def test_send_retries_reuse_the_seed(api: FakeAPI) -> None:
    """Every attempt of one send carries the same x-inngest-event-id-seed, so the server makes
    the same event ids and a retry after a lost response cannot duplicate events."""
    seen: list[str] = []
    client = inngest.Inngest(app_id="s", is_production=False, event_api_base_url=api.url)
    client._sleep_sync = lambda s: None
    http = client._http_sync()
    real_post = http.post

    def spy(url: str, **kw: Any) -> Any:
        seen.append(kw["headers"]["x-inngest-event-id-seed"])
        return real_post(url, **kw)

    http.post = spy  # type: ignore[method-assign]
    api.fail_next[:] = [503, 503]
    client.send_sync(inngest.Event(name="app/z", id="mine", ts=5))
    assert len(seen) == 3 and len(set(seen)) == 1
    assert api.events[-1][2] == [{"data": {}, "id": "mine", "name": "app/z", "ts": 5}]


def test_send_gives_up_and_reports(api: FakeAPI) -> None:
    client = inngest.Inngest(app_id="s", is_production=False, event_api_base_url=api.url)
    client._sleep_sync = lambda s: None
    api.fail_next[:] = [500] * 5
    with pytest.raises(inngest.errors.SendEventsError, match="boom"):
        client.send_sync(inngest.Event(name="app/z"))
    dead = inngest.Inngest(app_id="s", is_production=False, event_api_base_url="http://127.0.0.1:9")
    dead._sleep_sync = lambda s: None
    with pytest.raises(inngest.errors.SendEventsError, match="could not reach the event API"):
        dead.send_sync(inngest.Event(name="app/z"))


def test_send_needs_an_event_key_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNGEST_EVENT_KEY", raising=False)
    client = inngest.Inngest(app_id="s", is_production=True, signing_key=SIGNING_KEY)
    with pytest.raises(errors.EventKeyUnspecifiedError, match="INNGEST_EVENT_KEY"):
        client.send_sync(inngest.Event(name="x"))


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in config.Env:
        monkeypatch.delenv(k.value, raising=False)
    c = inngest.Inngest(app_id="a", signing_key=SIGNING_KEY)
    assert c.is_production and c.api_origin == "https://api.inngest.com/" and c.event_api_origin == "https://inn.gs/"
    monkeypatch.setenv("INNGEST_DEV", "1")
    c = inngest.Inngest(app_id="a")
    assert not c.is_production and c.api_origin == "http://127.0.0.1:8288/"
    monkeypatch.setenv("INNGEST_DEV", "http://devhost:9000")
    assert inngest.Inngest(app_id="a").event_api_origin == "http://devhost:9000"
    monkeypatch.setenv("INNGEST_BASE_URL", "http://selfhost:8288")
    c = inngest.Inngest(app_id="a")
    assert c.api_origin == c.event_api_origin == "http://selfhost:8288"
    monkeypatch.setenv("INNGEST_API_BASE_URL", "api.example.com")
    monkeypatch.setenv("INNGEST_EVENT_API_BASE_URL", "http://events:1")
    c = inngest.Inngest(app_id="a")
    assert c.api_origin == "http://api.example.com" and c.event_api_origin == "http://events:1"
    assert inngest.Inngest(app_id="a", api_base_url="http://arg:2").api_origin == "http://arg:2"
    monkeypatch.setenv("INNGEST_DEV", "0")
    monkeypatch.setenv("INNGEST_SIGNING_KEY", SIGNING_KEY)
    monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", FALLBACK_KEY)
    monkeypatch.setenv("INNGEST_EVENT_KEY", "ek")
    monkeypatch.setenv("INNGEST_ENV", "branch-1")
    c = inngest.Inngest(app_id="a")
    assert c.is_production and c.signing_key == SIGNING_KEY and c.signing_key_fallback == FALLBACK_KEY
    assert c.event_key == "ek" and c.env == "branch-1"
    assert not inngest.Inngest(app_id="a", is_production=False).is_production
    with pytest.raises(errors.URLInvalidError):
        inngest.Inngest(app_id="a", api_base_url="http://")


def test_env_header_and_serve_url(monkeypatch: pytest.MonkeyPatch, api: FakeAPI, loop: asyncio.AbstractEventLoop) -> None:
    monkeypatch.setenv("INNGEST_SERVE_ORIGIN", "https://public.example.com")
    monkeypatch.setenv("INNGEST_SERVE_PATH", "/custom/inngest")
    client = inngest.Inngest(app_id="envs", is_production=False, api_base_url=api.url, env="br")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> None:
        return None

    app = _serve(client, [f], loop)
    api.registrations.clear()
    res = app.request("PUT", "/custom/inngest")
    assert res.status == 200 and res.headers["x-inngest-env"] == "br"
    _, headers, body = api.registrations[-1]
    assert body["url"] == "https://public.example.com/custom/inngest"
    assert body["functions"][0]["steps"]["step"]["runtime"]["url"] == (
        "https://public.example.com/custom/inngest?fnId=envs-f&stepId=step"
    )
    assert headers["x-inngest-env"] == "br"


def test_register_failure_is_reported(api: FakeAPI, loop: asyncio.AbstractEventLoop) -> None:
    client = inngest.Inngest(app_id="bad", is_production=False, api_base_url=api.url)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> None:
        return None

    app = _serve(client, [f], loop)
    api.register_status = 400
    try:
        res = app.request("PUT", "/api/inngest")
    finally:
        api.register_status = 200
    assert res.status == 400
    assert res.json()["code"] == "registration_failed"
    assert "At least one function is invalid" in res.json()["message"]
    unreachable = inngest.Inngest(app_id="bad", is_production=False, api_base_url="http://127.0.0.1:9")
    app2 = _serve(unreachable, [f], loop)
    res = app2.request("PUT", "/api/inngest")
    assert res.status == 500 and "could not reach" in res.json()["message"]


def test_streaming_envelope(loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyngest.sdk import handler

    monkeypatch.setattr(handler, "STREAM_KEEPALIVE_S", 0.01)
    client = inngest.Inngest(app_id="st", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> Any:
        async def slow() -> Any:
            await asyncio.sleep(0.1)
            return {"x": 1}

        return await ctx.step.run("a", slow)

    app = _serve(client, [f], loop, streaming=inngest.Streaming.FORCE)
    body = exec_body(events=[event(name="e")], steps={}, stack=[])
    res = app.request("POST", "/api/inngest?fnId=st-f&stepId=step", {}, body)
    assert res.status == 201
    assert res.body.startswith(b"  ")  # keep-alive bytes while the step ran
    env = json.loads(res.body)
    assert env["status"] == 206 and env["headers"]["x-inngest-sdk"].startswith("pyngest-py")
    assert json.loads(env["body"])[0]["data"] == {"x": 1}


def test_logger_is_muted_during_replay(caplog: pytest.LogCaptureFixture, loop: asyncio.AbstractEventLoop) -> None:
    logger = logging.getLogger("user-logger")
    client = inngest.Inngest(app_id="log", is_production=False, logger=logger)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> str:
        ctx.logger.info("start")
        await ctx.step.run("a", lambda: 1)
        ctx.logger.info("after-a")
        await ctx.step.run("b", lambda: 2)
        ctx.logger.info("done")
        return "ok"

    sim = _serve(client, [f], loop)
    with caplog.at_level(logging.INFO, logger="user-logger"):
        simulate(sim, sim, "log-f", [event(name="e")])
    # each run is simulated on both "sides" (the same app twice), so every line appears twice
    lines = [r.getMessage() for r in caplog.records if r.name == "user-logger"]
    assert lines == ["start", "start", "after-a", "after-a", "done", "done"]


def test_determinism_warning(caplog: pytest.LogCaptureFixture, loop: asyncio.AbstractEventLoop) -> None:
    client = inngest.Inngest(app_id="det", is_production=False)
    order = ["a", "b"]

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> str:
        for sid in order:
            await ctx.step.run(sid, lambda: 1)
        return "ok"

    app = _serve(client, [f], loop)
    from .harness import h

    order[:] = ["c", "a", "b"]  # a deploy inserted a step before memoized ones
    body = exec_body(events=[event(name="e")], steps={h("a"): {"data": 1}}, stack=[h("a")])
    with caplog.at_level(logging.WARNING):
        res = app.request("POST", "/api/inngest?fnId=det-f&stepId=step", {}, body)
    assert res.status == 206
    assert any("memoized step(s)" in r.getMessage() for r in caplog.records)

    # a deploy removed a step whose memo the server still sends: warned once, the run ends
    caplog.clear()
    order[:] = ["a"]
    body = exec_body(events=[event(name="e")], steps={h("a"): {"data": 1}, h("b"): {"data": 1}},
                     stack=[h("a"), h("b")])
    with caplog.at_level(logging.WARNING):
        res = app.request("POST", "/api/inngest?fnId=det-f&stepId=step", {}, body)
    assert res.status == 200
    warned = [r.getMessage() for r in caplog.records if "never reached" in r.getMessage()]
    assert len(warned) == 1 and "1 memoized step(s)" in warned[0]

    # an unchanged function replays without a warning
    caplog.clear()
    order[:] = ["a", "b"]
    with caplog.at_level(logging.WARNING):
        assert app.request("POST", "/api/inngest?fnId=det-f&stepId=step", {}, body).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
