"""The Tornado adapter answers like the official one (served over real local HTTP)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.web

import pyngest
import pyngest.experimental.ai
import pyngest.tornado
from pyngest.experimental.dev_server.server import free_port

from . import scenarios
from .harness import URLClient, assert_same, event, simulate
from .official import inngest


@pytest.fixture
def tornado_apps() -> Iterator[tuple[URLClient, URLClient]]:
    kw = {"is_production": False, "api_base_url": "http://127.0.0.1:9", "event_api_base_url": "http://127.0.0.1:9"}
    oc, ofns = scenarios.build(inngest, inngest.experimental.ai, **kw)
    pc, pfns = scenarios.build(pyngest, pyngest.experimental.ai, **kw)
    oapp, papp = tornado.web.Application(), tornado.web.Application()
    inngest.tornado.serve(oapp, oc, [ofns["sync-steps"], ofns["parallel"]])
    pyngest.tornado.serve(papp, pc, [pfns["sync-steps"], pfns["parallel"]])
    ports = [free_port(), free_port()]
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        servers = [tornado.httpserver.HTTPServer(a) for a in (oapp, papp)]
        for srv, port in zip(servers, ports, strict=True):
            srv.listen(port, "127.0.0.1")
        loop.call_soon(started.set)
        loop.run_forever()
        for srv in servers:
            srv.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    o, p = URLClient(f"http://127.0.0.1:{ports[0]}"), URLClient(f"http://127.0.0.1:{ports[1]}")
    try:
        yield o, p
    finally:
        o.close()
        p.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _resolve(op: dict[str, Any]) -> Any:
    if op["op"] == "WaitForEvent":
        return {"name": "app/reply", "data": {}, "id": "01R", "ts": 1}
    return {"data": "invoked"}


def test_tornado_matches_official(tornado_apps: tuple[URLClient, URLClient], monkeypatch: pytest.MonkeyPatch) -> None:
    o, p = tornado_apps
    # The official Tornado adapter keeps Tornado's default text/html Content-Type next to its
    # own ("text/html; charset=UTF-8, application/json" on the wire); ours sends only JSON.
    from . import harness

    monkeypatch.setattr(harness, "IGNORED_HEADERS", {"content-type"})
    assert p.request("GET", "/api/inngest").headers["content-type"] == "application/json"
    t = simulate(o, p, "diff-app-sync-steps", [event()], resolve=_resolve, max_attempts=2)
    assert t.final["status"] == 200
    assert_same(o.request("GET", "/api/inngest"), p.request("GET", "/api/inngest"))
    # async functions too (the official adapter only runs sync handlers)
    t = simulate(p, p, "diff-app-parallel", [event()])
    assert t.final["body"] == {"res": [1, 2, 3], "after": 6}
