"""Test helpers: drive ASGI/WSGI apps in process, a fake Inngest API, and a run simulator
that feeds the same execution requests to an app built with the official SDK and one built
with pyngest, comparing every answer (the differential tests)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pyngest.protocol import jcs, signing

SIGNING_KEY = "signkey-test-" + "ab" * 32
FALLBACK_KEY = "signkey-test-" + "cd" * 32
COMPARED_HEADERS = (
    "content-type",
    "x-inngest-no-retry",
    "x-inngest-req-version",
    "x-inngest-framework",
    "x-inngest-expected-server-kind",
    "x-inngest-sdk-handled",
    "x-inngest-sync-kind",
)
# Headers a test may exempt from comparison (where the official SDK is wrong; see the test).
IGNORED_HEADERS: set[str] = set()
SDK_HEADER = re.compile(r"^[a-z]+-py:v\d+\.\d+\.\d+$")


def h(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()  # noqa: S324


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


async def asgi_call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes) -> HTTPResult:
    """One request through an ASGI app, no network (streaming bodies are collected)."""
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status = 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for k, v in message.get("headers", []):
                out_headers[k.decode().lower()] = v.decode()
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return HTTPResult(status, out_headers, b"".join(chunks))


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI request."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


async def send_plain(send: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    """Answer an ASGI request with a whole body."""
    pairs = [(k.encode(), v.encode()) for k, v in headers.items() if k.lower() != "content-length"]
    await send({"type": "http.response.start", "status": status,
                "headers": [*pairs, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ASGIClient:
    """Calls an ASGI app on one long-lived event loop (httpx clients stay valid)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> HTTPResult:
        return self.loop.run_until_complete(asgi_call(self.app, method, path, headers or {}, body))


class FlaskClient:
    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> HTTPResult:
        res = self.client.open(path, method=method, headers=headers or {}, data=body)
        return HTTPResult(res.status_code, {k.lower(): v for k, v in res.headers.items()}, res.get_data())


# ----------------------------------------------------------------------------- fake Inngest API


class FakeAPI:
    """A local stand-in for the Event API and the register/state endpoints."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, str], Any]] = []
        self.registrations: list[tuple[str, dict[str, str], Any]] = []
        self.fail_next: list[int] = []  # statuses to answer the next event sends with
        self.register_status = 200
        self.batches: dict[str, Any] = {}
        self.actions: dict[str, Any] = {}
        self.checkpoints: list[tuple[str, dict[str, str], Any]] = []
        self.checkpoint_statuses: list[int] = []  # statuses to answer the next checkpoints with (else 200)
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with api.lock:
                    if self.path.startswith("/e/"):
                        if api.fail_next:
                            self._reply(api.fail_next.pop(0), {"error": "boom", "status": 500})
                            return
                        body = json.loads(raw)
                        api.events.append((self.path, headers, body))
                        ids = [hashlib.sha1(json.dumps([e.get("name"), e.get("data")], sort_keys=True).encode()).hexdigest()[:26]
                               for e in body]
                        self._reply(200, {"ids": ids, "status": 200})
                    elif self.path.startswith("/v1/checkpoint/"):
                        status = api.checkpoint_statuses.pop(0) if api.checkpoint_statuses else 200
                        if status == 200:
                            api.checkpoints.append((self.path, headers, json.loads(raw)))
                        self._reply(status, {} if status == 200 else {"error": f"status {status}"})
                    elif self.path.startswith("/fn/register"):
                        api.registrations.append((self.path, headers, json.loads(raw)))
                        if api.register_status != 200:
                            self._reply(api.register_status, {"error": "At least one function is invalid", "status": api.register_status})
                        else:
                            self._reply(200, {"ok": True, "modified": True, "app_id": "x", "sync_id": "y"})
                    else:
                        self._reply(404, {"error": "not found"})

            def do_GET(self) -> None:
                m = re.match(r"^/v0/runs/([^/]+)/(batch|actions)$", self.path)
                if not m:
                    self._reply(404, {"error": "not found"})
                    return
                store = api.batches if m.group(2) == "batch" else api.actions
                self._reply(200, store.get(m.group(1), [] if m.group(2) == "batch" else {}))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- requests


def event(name: str = "app/test", data: dict[str, Any] | None = None, id: str = "01EVT", ts: int = 1_700_000_000_000) -> dict[str, Any]:  # noqa: A002
    return {"name": name, "data": data or {}, "id": id, "ts": ts, "user": {}}


def exec_body(
    *,
    events: list[dict[str, Any]],
    steps: dict[str, Any],
    stack: list[str],
    attempt: int = 0,
    max_attempts: int = 5,
    die: bool = False,
    run_id: str = "01HRUNRUNRUNRUNRUNRUNRUNRU",
    use_api: bool = False,
    qi_id: str | None = None,
) -> bytes:
    return jcs.dumps(
        {
            "event": events[0] if events else {},
            "events": events,
            "steps": steps,
            "defers": {},
            "ctx": {
                "fn_id": "7b4bd3e6-9c3e-4e1e-b2fc-3f2b6d0d2a10",
                "run_id": run_id,
                "env": "",
                "step_id": "step",
                "attempt": attempt,
                "max_attempts": max_attempts,
                "stack": {"stack": stack, "current": len(stack)},
                "disable_immediate_execution": die,
                "use_api": use_api,
                **({"qi_id": qi_id, "generation_id": 7} if qi_id else {}),
            },
            "version": 2,
            "use_api": use_api,
        }
    )


def signed_headers(body: bytes, key: str = SIGNING_KEY, t: int | None = None) -> dict[str, str]:
    return {"content-type": "application/json", "x-inngest-signature": signing.sign(body, key, t)}


# ----------------------------------------------------------------------------- normalization


def _iso_ms(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def normalize(res: HTTPResult) -> dict[str, Any]:
    """Status, compared headers and JSON body, with run-to-run noise (stacks, clock times) masked."""
    headers = {k: res.headers.get(k) for k in COMPARED_HEADERS if k not in IGNORED_HEADERS}
    sdk = res.headers.get("x-inngest-sdk")
    headers["x-inngest-sdk"] = "<sdk>" if sdk is not None and SDK_HEADER.match(sdk) else sdk
    times: list[int] = []
    ra = res.headers.get("retry-after")
    if ra is not None:
        times.append(_iso_ms(ra))
        headers["retry-after"] = "<time>"
    body: Any = res.json() if res.body.strip() else None

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k == "stack" and isinstance(v, str):
                    out[k] = "<stack>"
                else:
                    out[k] = walk(v)
            if out.get("op") == "Sleep" and isinstance(out.get("name"), str) and out["name"].endswith("Z"):
                times.append(_iso_ms(out["name"]))
                out["name"] = "<time>"
            return out
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return {"status": res.status, "headers": headers, "body": walk(body), "times": times}


def assert_same(official: HTTPResult, ours: HTTPResult, context: str = "") -> dict[str, Any]:
    a, b = normalize(official), normalize(ours)
    ta, tb = a.pop("times"), b.pop("times")
    assert a == b, f"{context}\nofficial: {a}\npyngest:  {b}"
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb, strict=True):
        assert abs(x - y) < 5_000, f"{context}: times differ: {x} vs {y}"
    return a


# ----------------------------------------------------------------------------- run simulator

Resolver = Callable[[dict[str, Any]], Any]


@dataclass
class Transcript:
    requests: int = 0
    final: dict[str, Any] = field(default_factory=dict)
    ops: list[str] = field(default_factory=list)



def advance(op: dict[str, Any], *, steps: dict[str, Any], stack: list[str], planned: list[str],
            resolve: Resolver | None, final_error: bool) -> bool:
    """Apply one op of a 206 answer to the run's state as a server would (memo, stack, planned
    steps); True when it is a StepError the server retries."""
    kind, sid = op["op"], op["id"]
    if kind == "StepPlanned":
        if sid not in planned:
            planned.append(sid)
        return False
    if kind == "StepError" and not final_error:
        return True
    if kind == "StepRun":
        steps[sid] = {"data": op["data"]}
    elif kind in ("StepFailed", "StepError"):  # a StepError that cannot be retried fails
        steps[sid] = {"error": op["error"]}
    elif kind == "Sleep":
        steps[sid] = None
    else:
        assert resolve is not None, f"no resolver for {kind}"
        steps[sid] = resolve(op)
    stack.append(sid)
    if sid in planned:
        planned.remove(sid)
    return False

def simulate(
    official: Any,
    ours: Any,
    fn_id: str,
    events: list[dict[str, Any]],
    *,
    resolve: Resolver | None = None,
    max_attempts: int = 5,
    max_requests: int = 80,
    sign_key: str | None = None,
) -> Transcript:
    """Run a function on both apps like a server would; assert both answer every request alike.

    State advances from the official SDK's answers (the oracle). ``resolve(op)`` gives the
    memo for server-side ops (WaitForEvent, InvokeFunction, AIGateway).
    """
    steps: dict[str, Any] = {}
    stack: list[str] = []
    planned: list[str] = []
    attempt = 0
    die = False
    t = Transcript()
    while t.requests < max_requests:
        target = planned[0] if planned else "step"
        body = exec_body(events=events, steps=steps, stack=stack, attempt=attempt, max_attempts=max_attempts, die=die)
        headers = signed_headers(body, sign_key) if sign_key else {"content-type": "application/json"}
        path = f"/api/inngest?fnId={fn_id}&stepId={target}"
        ro = official.request("POST", path, headers, body)
        rp = ours.request("POST", path, headers, body)
        t.requests += 1
        norm = assert_same(ro, rp, f"request {t.requests} (target {target}, attempt {attempt})")
        status = ro.status
        if status == 200:
            t.final = norm
            return t
        if status != 206:
            if norm["headers"]["x-inngest-no-retry"] == "true" or attempt + 1 >= max_attempts:
                t.final = norm
                return t
            attempt += 1
            continue
        ops = ro.json()
        if len(ops) > 1:
            die = True
        retry = False
        final_error = norm["headers"]["x-inngest-no-retry"] == "true" or attempt + 1 >= max_attempts
        for op in ops:
            t.ops.append(op["op"])
            retry = advance(op, steps=steps, stack=stack, planned=planned, resolve=resolve,
                            final_error=final_error) or retry
        attempt = attempt + 1 if retry else 0
    raise AssertionError("the run did not finish")


class URLClient:
    """Requests to an app served over real HTTP (e.g. Tornado in a thread)."""

    def __init__(self, base_url: str) -> None:
        import httpx

        self.base = base_url
        self.http = httpx.Client(timeout=30)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> HTTPResult:
        res = self.http.request(method, self.base + path, headers=headers or {}, content=body)
        return HTTPResult(res.status_code, {k.lower(): v for k, v in res.headers.items()}, res.content)

    def close(self) -> None:
        self.http.close()
