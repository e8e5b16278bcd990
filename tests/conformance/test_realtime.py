"""Realtime on ``pyngest dev`` (PROTOCOL.md §13): functions publish with each SDK's own call
(the npm SDK's ``step.realtime.publish`` and ``inngest.realtime.publish``, the official Python
SDK's and pyngest's ``experimental.realtime.publish``), subscribers listen with pyngest's
``subscribe`` helper (SSE), the official npm client in Node and in a real Chromium page
(WebSocket), and a plain WebSocket client; REST publishing, tokens and their refusals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets
from websockets.asyncio.client import connect as ws_connect

import pyngest
from pyngest.experimental import realtime
from pyngest.server.realtime import tokens

from .harness import APP_KINDS, JS_DIR, START_TIMEOUT, Api, App, Server, new_tag

pytestmark = pytest.mark.conformance

WAIT_S = 90.0  # generous for two loaded cores; a passing test never waits this long


def client_for(server: Server) -> pyngest.Inngest:
    return pyngest.Inngest(app_id="realtime-test", is_production=False, api_base_url=server.url)


async def take(stream: realtime.Subscription, n: int, timeout: float = WAIT_S) -> list[realtime.RealtimeMessage]:
    got: list[realtime.RealtimeMessage] = []

    async def read() -> None:
        async for message in stream:
            got.append(message)
            if len(got) >= n:
                return

    await asyncio.wait_for(read(), timeout)
    return got


def token(server: Server, channel: str, topics: list[str]) -> str:
    res = requests.post(f"{server.url}/v1/realtime/token", timeout=10,
                        json=[{"channel": channel, "name": t, "kind": "run"} for t in topics])
    assert res.status_code == 201, res.text
    return str(res.json()["jwt"])


def ws_url(server: Server, jwt: str | None) -> str:
    base = server.url.replace("http://", "ws://") + "/v1/realtime/connect"
    return base + (f"?token={jwt}" if jwt is not None else "")


def publish(server: Server, channel: str, topic: str, data: Any, **params: str) -> requests.Response:
    return requests.post(f"{server.url}/v1/realtime/publish", params={"channel": channel, "topic": topic, **params},
                         json=data, timeout=10)


# ------------------------------------------------------------------------ functions publish


@pytest.mark.parametrize("app", APP_KINDS, indirect=True)
async def test_function_publishes_reach_a_subscriber_in_order(server: Server, api: Api, app: App) -> None:
    """Each SDK's publish from inside a function, received in order by pyngest's helper."""
    channel = f"run-updates:{uuid.uuid4().hex}"
    async with realtime.subscribe(client_for(server), channel=channel, topics=["progress"]) as stream:
        event_id = await asyncio.to_thread(api.send, app.event("realtime-publish"),
                                           {"channel": channel, "count": 4, "tag": new_tag()})
        got = await take(stream, 4)
    run = await asyncio.to_thread(api.wait_run, event_id)
    assert run["status"] == "Completed", run
    assert [m.data["i"] for m in got] == [0, 1, 2, 3]
    assert {(m.kind, m.channel, m.topic) for m in got} == {("data", channel, "progress")}
    assert {m.data["run_id"] for m in got} == {run["run_id"]}
    if app.kind == "js":  # the npm SDK names the run it publishes from
        assert {m.run_id for m in got} == {run["run_id"]}


def _node_subscriber(server: Server, channel: str, count: int, env: dict[str, str] | None = None
                     ) -> subprocess.Popen[str]:
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    return subprocess.Popen(
        [node, "--experimental-websocket", "--no-warnings", "realtime_subscribe.mjs", server.url, channel,
         "progress", str(count)],
        cwd=JS_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


class Output:
    """A process's output lines, read as they come by one thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait(self, predicate: Any, timeout: float) -> list[str]:
        with self.changed:
            ok = self.changed.wait_for(lambda: predicate(self.lines), timeout)
            assert ok, f"node subscriber said: {self.lines}"
            return list(self.lines)


@pytest.mark.parametrize("app", ["js", "py_fastapi", "pyngest_fastapi"], indirect=True)
def test_npm_client_in_node_receives_a_functions_messages(server: Server, api: Api, app: App) -> None:
    """The official npm client (``inngest/realtime``, WebSocket) subscribed with a token the npm
    SDK got from the server, receiving what a function publishes."""
    channel = f"user:{uuid.uuid4().hex}"
    proc = _node_subscriber(server, channel, 3)
    try:
        output = Output(proc)
        output.wait(lambda lines: "subscribed" in lines, START_TIMEOUT)
        event_id = api.send(app.event("realtime-publish"), {"channel": channel, "count": 3, "tag": new_tag()})
        lines = output.wait(lambda lines: len(lines) >= 4, WAIT_S)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    run = api.wait_run(event_id)
    messages = [json.loads(line) for line in lines[1:4]]
    assert [m["data"]["i"] for m in messages] == [0, 1, 2]
    assert {(m["kind"], m["channel"], m["topic"]) for m in messages} == {("data", channel, "progress")}
    assert {m["data"]["run_id"] for m in messages} == {run["run_id"]}
    assert proc.returncode == 0


# ------------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def page_server(workdir: Path) -> Iterator[str]:
    """The official npm client bundled for the browser (esbuild) and a page, served from
    another origin than the pyngest server's."""
    site = workdir / "site"
    site.mkdir()
    esbuild = JS_DIR / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "tests/conformance/js/node_modules is missing esbuild: run `npm ci` there"
    subprocess.run([str(esbuild), "realtime_browser.mjs", "--bundle", "--format=iife", "--platform=browser",
                    f"--outfile={site / 'realtime.js'}", "--log-level=warning"], cwd=JS_DIR, check=True, timeout=120)
    (site / "index.html").write_text("""<!doctype html><html><head><meta charset="utf-8">
<script src="realtime.js"></script></head><body><ul id="messages"></ul><script>
window.received = [];
window.start = async (token) => {
  const stream = await window.inngestRealtime.subscribe(token);
  (async () => {
    for await (const message of stream) {
      window.received.push({ ...message, createdAt: String(message.createdAt) });
      const li = document.createElement("li");
      li.textContent = JSON.stringify(message.data);
      document.getElementById("messages").appendChild(li);
    }
  })();
  return "subscribed";
};
</script></body></html>""")

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(site), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.browser
@pytest.mark.parametrize("app", ["js"], indirect=True)
def test_npm_client_in_chromium_receives_a_functions_messages(server: Server, api: Api, app: App,
                                                                page_server: str) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Chromium is not installed (.ci/run installs Debian's)")
    from playwright.sync_api import sync_playwright

    channel = f"browser:{uuid.uuid4().hex}"
    jwt = token(server, channel, ["progress"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(page_server)
            started = page.evaluate("(t) => window.start(t)", {"channel": channel, "topics": ["progress"],
                                                                "key": jwt, "apiBaseUrl": server.url})
            assert started == "subscribed"
            event_id = api.send(app.event("realtime-publish"), {"channel": channel, "count": 3, "tag": new_tag()})
            page.wait_for_function("window.received.length >= 3", timeout=WAIT_S * 1000)
            received = page.evaluate("window.received")
            assert page.locator("#messages li").count() == 3
        finally:
            browser.close()
    run = api.wait_run(event_id)
    assert [m["data"]["i"] for m in received] == [0, 1, 2]
    assert {(m["kind"], m["channel"], m["topic"], m["runId"]) for m in received} == {
        ("data", channel, "progress", run["run_id"])}


# ------------------------------------------------------------------------ REST and protocol


async def test_rest_publishes_reach_websocket_and_sse_subscribers_in_order(server: Server) -> None:
    channel = f"orders:{uuid.uuid4().hex}"
    jwt = token(server, channel, ["a", "b"])
    before = publish(server, channel, "a", {"n": -1})  # published before anyone subscribed
    assert before.status_code == 200
    async with ws_connect(ws_url(server, jwt)) as ws, realtime.subscribe(
            token=jwt, api_base_url=server.url) as sse:
        for n in range(200):
            res = await asyncio.to_thread(publish, server, channel, "a" if n % 2 else "b", {"n": n})
            assert res.status_code == 200, res.text
        other = await asyncio.to_thread(publish, server, f"{channel}-other", "a", {"n": "elsewhere"})
        assert other.status_code == 200
        text = await asyncio.to_thread(requests.post, f"{server.url}/v1/realtime/publish",
                                       params={"channel": channel, "topic": "a"}, data=b"not json", timeout=10)
        assert text.status_code == 200
        frames = [json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)) for _ in range(201)]
        via_sse = await take(sse, 201)
    assert [f["data"]["n"] for f in frames[:200]] == list(range(200))
    assert [m.data["n"] for m in via_sse[:200]] == list(range(200))
    assert [f["topic"] for f in frames[:4]] == ["b", "a", "b", "a"]
    assert frames[200]["data"] == "not json" and via_sse[200].data == "not json"  # sent as a string
    first = frames[0]
    assert set(first) == {"kind", "data", "created_at", "channel", "env_id", "topic"}
    assert first["kind"] == "data" and first["env_id"] == tokens.DEV_ENV_ID
    assert first["created_at"].endswith("Z")


async def test_streamed_publish_arrives_as_a_datastream(server: Server) -> None:
    channel = f"stream:{uuid.uuid4().hex}"
    body = ("é" * 700 + "-end").encode()  # pieces of 1 KB split the two-byte characters
    async with realtime.subscribe(token=token(server, channel, ["ai"]), api_base_url=server.url) as stream:
        res = await asyncio.to_thread(requests.post, f"{server.url}/v1/realtime/publish",
                                      params={"channel": channel, "topic": "ai"}, data=body,
                                      headers={"content-type": "text/stream"}, timeout=10)
        assert res.status_code == 200
        got = await take(stream, 4)
    kinds = [m.kind for m in got]
    assert kinds == ["datastream-start", "chunk", "chunk", "datastream-end"]
    stream_id = got[0].data
    assert got[-1].data == stream_id and {m.stream_id for m in got[1:3]} == {stream_id}
    assert "".join(m.data for m in got[1:3]).encode() == body


async def test_subscribing_needs_a_valid_token(server: Server) -> None:
    channel = f"secret:{uuid.uuid4().hex}"
    now = int(time.time())
    forged = tokens.issue(b"not-the-servers-secret", account_id=tokens.DEV_ACCOUNT_ID, env_id=tokens.DEV_ENV_ID,
                          topics=[tokens.Topic(channel, "t")], now_s=now)
    expired = tokens.issue(tokens.DEV_SECRET, account_id=tokens.DEV_ACCOUNT_ID, env_id=tokens.DEV_ENV_ID,
                           topics=[tokens.Topic(channel, "t")], now_s=now - 120)
    header, claims, signature = token(server, channel, ["t"]).split(".")
    unsigned = f"{header}.{claims}."
    for bad, why in [(None, "needs a token"), ("garbage", "not a JWT"), (forged, "signature"),
                     (expired, "expired"), (unsigned, "not a JWT")]:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with ws_connect(ws_url(server, bad)):
                pass
        assert refused.value.response.status_code == 401
        assert why in refused.value.response.body.decode(), refused.value.response.body
        res = requests.get(f"{server.url}/v1/realtime/sse", params={"token": bad} if bad else {}, timeout=10)
        assert res.status_code == 401 and why in res.json()["error"]
    # a token the server issued, sent as a Bearer header instead of ?token=
    good = token(server, channel, ["t"])
    async with ws_connect(ws_url(server, None), additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        assert publish(server, channel, "t", {"ok": True}).status_code == 200
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["data"] == {"ok": True}


def test_bad_requests_are_refused_with_reasons(server: Server) -> None:
    url = f"{server.url}/v1/realtime/publish"
    assert requests.post(url, params={"topic": "t"}, json={}, timeout=10).status_code == 400
    missing_topic = requests.post(url, params={"channel": "c"}, json={}, timeout=10)
    assert missing_topic.status_code == 400 and "topic" in missing_topic.json()["error"]
    big = requests.post(url, params={"channel": "c", "topic": "t"}, data=b'"' + b"x" * (512 * 1024) + b'"',
                        timeout=10)
    assert big.status_code == 413 and "524288 bytes" in big.json()["error"]
    bad_meta = requests.post(url, params={"channel": "c", "topic": "t", "metadata": "{"}, json={}, timeout=10)
    assert bad_meta.status_code == 400
    tok = f"{server.url}/v1/realtime/token"
    for body in [{}, [], [{"channel": "c"}], [{"channel": "", "name": "t"}], [{"channel": "c", "name": "t",
                                                                                "kind": "event"}],
                 [{"channel": "c", "name": f"t{i}"} for i in range(101)]]:
        res = requests.post(tok, json=body, timeout=10)
        assert res.status_code == 400 and res.json()["error"].startswith("Invalid request"), (body, res.text)
    assert requests.post(tok, data=b"{not json", timeout=10).status_code == 400


def test_sdk_token_helpers_return_what_the_npm_client_takes(server: Server) -> None:
    client = client_for(server)
    got = realtime.get_subscription_token_sync(client, "user:1", ["ai", "status"])
    assert set(got) == {"channel", "topics", "key"} and got["topics"] == ["ai", "status"]
    claims = tokens.verify([tokens.DEV_SECRET], str(got["key"]), int(time.time()))
    assert [(t.channel, t.name, t.kind) for t in claims.topics] == [("user:1", "ai", "run"), ("user:1", "status", "run")]
    assert claims.env_id == tokens.DEV_ENV_ID and claims.account_id == tokens.DEV_ACCOUNT_ID
    assert not claims.publish


def _raw_subscriber(server: Server, jwt: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a small receive
    buffer, so the server's sends back up at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/realtime/connect?token={jwt} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_subscriber_that_stops_reading_is_dropped_and_told_why(server: Server) -> None:
    """A client that reads nothing: the server queues for it up to its bound (16 MB), then drops
    it with close code 1013 and a reason, while the publisher and another subscriber carry on."""
    channel = f"slow:{uuid.uuid4().hex}"
    jwt = token(server, channel, ["t"])
    blob = "x" * (400 * 1024)
    count = 80  # 32 MB: more than the queue bound and the socket buffers on the way
    slow = _raw_subscriber(server, jwt)
    try:
        async with ws_connect(ws_url(server, jwt), max_size=None) as fast:
            async def read_fast() -> list[int]:
                return [json.loads(await fast.recv())["data"]["n"] for _ in range(count)]

            reading = asyncio.create_task(read_fast())
            with requests.Session() as http:
                for n in range(count):
                    res = await asyncio.to_thread(http.post, f"{server.url}/v1/realtime/publish",
                                                  params={"channel": channel, "topic": "t"},
                                                  json={"n": n, "blob": blob}, timeout=30)
                    assert res.status_code == 200
            assert await asyncio.wait_for(reading, WAIT_S) == list(range(count))
        # now read what reached the slow client: some frames, then the server's close frame
        slow.settimeout(WAIT_S)
        received = b""
        while chunk := slow.recv(1 << 20):
            received += chunk
    finally:
        slow.close()
    assert len(received) < count * len(blob)
    close = received.rindex(b"\x88")  # FIN + close opcode, then a 7-bit length, code, reason
    code, reason = int.from_bytes(received[close + 2:close + 4], "big"), received[close + 4:].decode()
    assert code == 1013 and reason.startswith("realtime subscriber too slow"), (code, reason)


async def test_stopping_the_server_tells_subscribers_and_ends_their_connections(tmp_path: Path) -> None:
    """SIGTERM: every subscriber gets a ``closing`` message and its connection ends (WebSocket
    code 1012) at once — with a shutdown grace of 10 minutes, longer than this test waits, so
    waiting for the grace to run out would fail it."""
    own = Server(tmp_path / "server", extra_args=["--shutdown-grace", "600"])
    own.workdir.mkdir()
    own.start()
    try:
        jwt = token(own, "c", ["t"])
        async with ws_connect(ws_url(own, jwt)) as ws, realtime.subscribe(token=jwt, api_base_url=own.url) as sse:
            assert own.proc is not None and own.proc.popen is not None
            own.proc.popen.terminate()
            closing = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT_S)

            async def rest() -> list[realtime.RealtimeMessage]:
                return [m async for m in sse]  # the stream ends after the closing message

            via_sse = await asyncio.wait_for(rest(), WAIT_S)
        assert closing["kind"] == "closing"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert [m.kind for m in via_sse] == ["closing"]
        assert own.proc.popen.wait(timeout=WAIT_S) == 0
    finally:
        own.stop()


async def test_a_websocket_adds_topics_with_another_token_and_drops_topics(server: Server) -> None:
    channel = f"subs:{uuid.uuid4().hex}"
    async with ws_connect(ws_url(server, token(server, channel, ["a"]))) as ws:
        # read by the server in this order: "a" is gone by the time "b" is on
        await ws.send(json.dumps({"kind": "unsub", "data": [{"channel": channel, "name": "a"}]}))
        await ws.send(json.dumps({"kind": "sub", "data": "not-a-token"}))  # ignored
        await ws.send(json.dumps({"kind": "sub", "data": token(server, channel, ["b"])}))
        for _ in range(200):  # until the server has read them (it does so alongside publishes)
            assert publish(server, channel, "b", {"probe": True}).status_code == 200
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the sub message never took effect")
        assert publish(server, channel, "a", {"n": 1}).status_code == 200
        assert publish(server, channel, "b", {"n": 2}).status_code == 200
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        while frame["data"].get("probe"):
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert (frame["topic"], frame["data"]) == ("b", {"n": 2})  # "a" was dropped
