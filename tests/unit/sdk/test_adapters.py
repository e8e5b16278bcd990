"""The Django and plain-Starlette adapters answer like the FastAPI one (and Django like the
official Django adapter)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

import pyngest as inngest
import pyngest.django
import pyngest.experimental.ai
import pyngest.starlette

from . import django_urls, scenarios
from .harness import ASGIClient, HTTPResult, assert_same, event, exec_body, simulate
from .official import inngest as official


class DjangoClient:
    def __init__(self, prefix: str) -> None:
        from django.test import Client

        self.client = Client()
        self.prefix = prefix

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> HTTPResult:
        path = path.replace("/api/inngest", self.prefix, 1)
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        res = self.client.generic(method, path, data=body, content_type="application/json", **extra)
        return HTTPResult(res.status_code, {k.lower(): v for k, v in res.headers.items()}, res.content)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _resolve(op: dict[str, Any]) -> Any:
    if op["op"] == "WaitForEvent":
        return {"name": "app/reply", "data": {}, "id": "01R", "ts": 1}
    return {"data": "invoked"}


def test_django_sync_matches_official() -> None:
    django_urls.setup()
    import inngest.django as official_django  # noqa: F401 - needs configured settings

    kw = {"is_production": False, "api_base_url": "http://127.0.0.1:9", "event_api_base_url": "http://127.0.0.1:9"}
    oc, ofns = scenarios.build(official, official.experimental.ai, **kw)
    pc, pfns = scenarios.build(inngest, pyngest.experimental.ai, **kw)
    django_urls.add(official.django.serve(oc, [ofns["sync-steps"]], serve_path="/official/inngest"))
    django_urls.add(pyngest.django.serve(pc, [pfns["sync-steps"]], serve_path="/ours/inngest"))
    o, p = DjangoClient("/official/inngest"), DjangoClient("/ours/inngest")
    t = simulate(o, p, "diff-app-sync-steps", [event()], resolve=_resolve, max_attempts=2)
    assert t.final["status"] == 200
    assert_same(o.request("GET", "/api/inngest"), p.request("GET", "/api/inngest"))


def test_django_async_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INNGEST_STREAMING", "force")  # ignored: Django gets whole bodies
    django_urls.setup()
    c = inngest.Inngest(app_id="dj", is_production=False)

    @c.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> Any:
        return await ctx.step.run("a", lambda: "async-ok")

    django_urls.add(pyngest.django.serve(c, [f], serve_path="/async/inngest"))
    res = DjangoClient("/async/inngest").request(
        "POST", "/api/inngest?fnId=dj-f&stepId=step", {}, exec_body(events=[event(name="e")], steps={}, stack=[])
    )
    assert res.status == 206 and res.json()[0]["data"] == "async-ok"


def test_starlette_serve_and_asgi_app(loop: asyncio.AbstractEventLoop) -> None:
    c = inngest.Inngest(app_id="st", is_production=False)

    @c.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    def f(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("a", lambda: "sync-in-asgi")

    app = Starlette()
    pyngest.starlette.serve(app, c, [f])
    bare = pyngest.starlette.asgi_app(c, [f])
    a, b = ASGIClient(app, loop), ASGIClient(bare, loop)
    t = simulate(a, b, "st-f", [event(name="e")])
    assert t.final["body"] == "sync-in-asgi"
    assert a.request("GET", "/api/inngest").headers["x-inngest-framework"] == "starlette"
    assert a.request("DELETE", "/api/inngest").status == 405


def test_django_accepts_bodies_up_to_the_protocol_limit() -> None:
    """Execution requests up to 4 MiB are legal (larger state goes through ``use_api``); with
    Django's default DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) ``request.body`` refused them with a
    400, so a run failed once its memoized state passed 2.5 MiB."""
    from django.conf import settings

    django_urls.setup()
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2_621_440  # Django's default
    c = inngest.Inngest(app_id="dj-big", is_production=False)

    @c.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    def f(ctx: inngest.ContextSync) -> Any:
        big = ctx.step.run("big", lambda: "x")
        return ctx.step.run("len", lambda: len(big))

    django_urls.add(pyngest.django.serve(c, [f], serve_path="/big/inngest"))
    client = DjangoClient("/big/inngest")
    big_id = hashlib.sha1(b"big").hexdigest()

    def post(size: int) -> HTTPResult:
        body = exec_body(events=[event(name="e")], steps={big_id: {"data": "x" * size}}, stack=[big_id])
        return client.request("POST", "/api/inngest?fnId=dj-big-f&stepId=step", {}, body)

    res = post(3 * 1024 * 1024)
    assert res.status == 206, res.body[:300]
    assert res.json()[0]["data"] == 3 * 1024 * 1024
    # Beyond the protocol's limit Django's own refusal still applies.
    assert post(5 * 1024 * 1024).status == 400
