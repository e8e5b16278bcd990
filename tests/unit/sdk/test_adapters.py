"""The Django and plain-Starlette adapters answer like the FastAPI one (and Django like the
official Django adapter)."""

from __future__ import annotations

import asyncio
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
