"""The apps themselves, and what the official SDKs send when synced (PROTOCOL.md §2).

These cases point each app (official SDKs and pyngest's) at a small in-process listener standing in for the server, so they
check the SDKs' side of the sync protocol without a pyngest server: that each app answers the
introspection GET as an SDK, that a PUT makes it POST ``/fn/register`` to its configured base
URL while the PUT is still open, and that the payload has the shapes the server must accept.
The last case syncs each app to a real ``pyngest dev`` and runs a function end to end.
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from .harness import APP_KINDS, Api, App, new_tag

pytestmark = pytest.mark.conformance

PYNGEST = importlib.metadata.version("pyngest")
SDK_HEADER = {
    "py_fastapi": "inngest-py:v0.5.19",
    "py_flask": "inngest-py:v0.5.19",
    "js": "inngest-js:v4.24.0",
    # docs/compatibility.md: same form as upstream's, with pyngest's own name and version
    "pyngest_fastapi": f"pyngest-py:v{PYNGEST}",
    "pyngest_flask": f"pyngest-py:v{PYNGEST}",
    "pyngest_django": f"pyngest-py:v{PYNGEST}",
    "pyngest_fastapi_classic": f"pyngest-py:v{PYNGEST}",
}
SDK_FIELD = {
    "py_fastapi": "py:v0.5.19",
    "py_flask": "py:v0.5.19",
    "js": "js:v4.24.0",
    "pyngest_fastapi": f"py:v{PYNGEST}",
    "pyngest_flask": f"py:v{PYNGEST}",
    "pyngest_django": f"py:v{PYNGEST}",
    "pyngest_fastapi_classic": f"py:v{PYNGEST}",
}

# The functions every app defines, by id (without the app prefix).
COMMON_FUNCTIONS = {
    "realtime-publish",
    "steps-memo",
    "sleep",
    "sleep-until",
    "wait-for-event",
    "invoke-child",
    "invoke-child-fail",
    "invoke-child-slow",
    "invoke-parent",
    "parallel",
    "retry",
    "retry-after",
    "non-retriable",
    "on-failure",
    "on-failure-failure",  # the SDKs register an on_failure handler as its own function
    "cancellable",
    "timeout-finish",
    "timeout-start",
    "cron",
    "multi-trigger",
    "dedup",
    "large-state",
    "crash-ten",
}
ONLY_IN = {"js": {"fetch", "parallel-sleep"}}  # step.fetch and middleware hooks: npm SDK only
# Python apps only: failures the Python SDKs raise by name (test_failure_output.py)
PY_ONLY = {"parallel-disappears", "unexpected-step", "unserializable"}
# The async Python apps only (apps/functions_async.py): the multi-node crash test's mixed runs
ASYNC_PY_ONLY = {"crash-mixed", "torture-retry", "torture-debounce"}
ASYNC_PY_KINDS = {"py_fastapi", "pyngest_fastapi", "pyngest_django", "pyngest_fastapi_classic"}


class FakeServer:
    """Answers /fn/register like a server would and keeps every request it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                )
                reply = json.dumps({"ok": True, "modified": True}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module", params=APP_KINDS)
def fake_app(request: pytest.FixtureRequest, fake: FakeServer, workdir: Path) -> Iterator[App]:
    app = App(request.param, workdir, fake.url)
    app.start()
    yield app
    app.stop()


def test_app_answers_introspection_as_an_sdk(fake_app: App) -> None:
    res = requests.get(fake_app.serve_url, timeout=10)
    assert res.status_code == 200
    assert res.headers["x-inngest-sdk"] == SDK_HEADER[fake_app.kind]
    body = res.json()
    assert body["mode"] == "dev"
    registered = _registered(fake_app.kind)
    # Python counts the functions the user defined, JS also counts on_failure handlers.
    expected = len(registered) if fake_app.kind == "js" else len(registered) - 1
    assert body["function_count"] == expected


def _registered(kind: str) -> set[str]:
    """The function ids app ``kind`` registers."""
    return (COMMON_FUNCTIONS | ONLY_IN.get(kind, set()) | (PY_ONLY if kind != "js" else set())
            | (ASYNC_PY_ONLY if kind in ASYNC_PY_KINDS else set()))


def _register_request(fake: FakeServer, app: App) -> dict[str, Any]:
    before = len(fake.requests)
    res = app.sync()
    assert res.status_code == 200, res.text
    assert res.headers.get("x-inngest-sync-kind") == "out_of_band"
    new = fake.requests[before:]
    assert [r["path"] for r in new] == ["/fn/register"], new
    return new[0]


def test_put_makes_the_sdk_register_with_the_base_url(fake: FakeServer, fake_app: App) -> None:
    req = _register_request(fake, fake_app)
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["content-type"].startswith("application/json")
    assert headers["x-inngest-sdk"] == SDK_HEADER[fake_app.kind]
    body = json.loads(req["body"])
    # Python spells these keys `appname` / `deploy_type`; JS `appName` / `deployType`.
    app_name = body.get("appName", body.get("appname"))
    assert app_name == fake_app.id
    assert body.get("deployType", body.get("deploy_type")) == "ping"
    assert body["url"] == fake_app.serve_url
    assert body["sdk"] == SDK_FIELD[fake_app.kind]
    assert body["v"] == "0.1"


def test_registered_functions_are_the_same_set_in_every_app(
    fake: FakeServer, fake_app: App
) -> None:
    body = json.loads(_register_request(fake, fake_app)["body"])
    functions = {f["id"]: f for f in body["functions"]}
    prefix = f"{fake_app.id}-"
    assert all(slug.startswith(prefix) for slug in functions)
    ids = {slug[len(prefix) :] for slug in functions}
    assert ids == _registered(fake_app.kind)

    for slug, fn in functions.items():
        (step,) = fn["steps"].values()
        runtime = urlparse(step["runtime"]["url"])
        assert step["runtime"]["type"] == "http"
        assert parse_qs(runtime.query) == {"fnId": [slug], "stepId": ["step"]}
        assert f"{runtime.scheme}://{runtime.netloc}{runtime.path}" == fake_app.serve_url

    failure = functions[f"{prefix}on-failure-failure"]
    assert failure["triggers"] == [
        {
            "event": "inngest/function.failed",
            "expression": f"event.data.function_id == '{prefix}on-failure'",
        }
    ]
    assert functions[f"{prefix}cron"]["triggers"] == [{"cron": "* * * * *"}]
    assert functions[f"{prefix}multi-trigger"]["triggers"][2] == {
        "event": fake_app.event("multi.cond"),
        "expression": "event.data.ok == true",
    }
    assert functions[f"{prefix}cancellable"]["cancel"] == [
        {"event": fake_app.event("cancel"), "if": "async.data.key == event.data.key"}
    ]
    assert functions[f"{prefix}timeout-finish"]["timeouts"] == {"finish": "2s"}
    assert functions[f"{prefix}retry"]["steps"]["step"]["retries"] == {"attempts": 3}


def test_sync_with_real_server_then_run(app: App, api: Api) -> None:
    """The same apps synced to a real `pyngest dev` (by the fixture) run a function."""
    tag = new_tag()
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": tag}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"values": [1, 2, 3]}
