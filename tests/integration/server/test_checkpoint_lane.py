"""The short path for checkpoints through the HTTP server (``pyngest.server.api.lane``).

Two halves: the protocol on its own (uvicorn serving a small ASGI app through ``LaneProtocol``:
which requests take the short path, keep-alive, pipelining, errors, a client that goes away, a
shutdown mid-request), and the real server (``pyngest dev`` from the CLI): a checkpoint answered
on the short path is answered as the usual path answers it, guards and all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from pyngest.server.api import lane
from pyngest.server.awake import KeepAwake
from tests.integration.server.test_cli import free_port, spawn, stop, wait_healthy
from tests.integration.server.test_write_count_sdks import bound_socket

RUN = "01HZZZZZZZZZZZZZZZZZZZZZZZ"


def request(path: str, body: bytes = b"{}", *headers: str, method: str = "POST", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join([*lines, "", ""])).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 30) == b""
    except ConnectionError:
        return True


# ------------------------------------------------------------------ the protocol on its own


class Recorder:
    """An ASGI app that says which path through the server called it (the short path runs it in
    ``LaneProtocol._answer``'s task, the usual one in uvicorn's request-response cycle)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        body = message.get("body", b"")
        self.entered.set()
        await self.release.wait()
        if scope["path"].endswith("/boom/async"):
            raise RuntimeError("the app failed")
        if scope["path"].endswith("/silent/async"):
            return
        task = asyncio.current_task()
        via = "lane" if task is not None and "_answer" in task.get_coro().__qualname__ else "uvicorn"
        out = orjson.dumps({"via": via, "path": scope["path"], "body": body.decode(), "method": scope["method"],
                            "query": scope["query_string"].decode()})
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"), (b"x-answer", b"yes"),
                                (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})


@contextlib.asynccontextmanager
async def lane_server(app: Recorder, keep_awake: KeepAwake | None = None) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    sock = bound_socket()
    port = sock.getsockname()[1]
    protocol = lane.lane_protocol(app, keep_awake)
    assert protocol != "httptools"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, lifespan="off",
                                           log_level="critical", access_log=False, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield port, server
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recorder, int, uvicorn.Server]]:
    app = Recorder()
    async with lane_server(app) as (port, server):
        yield app, port, server


async def test_checkpoints_on_a_keep_alive_connection_take_the_short_path(served: Any) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for n in range(3):
        writer.write(request(f"/v1/checkpoint/{RUN}/async", b'{"n":%d}' % n))
        status, headers, body = await read_response(reader)
        answer = orjson.loads(body)
        assert status == 201 and headers["x-answer"] == "yes" and headers["content-type"] == "application/json"
        assert answer == {"via": "lane", "path": f"/v1/checkpoint/{RUN}/async", "body": f'{{"n":{n}}}',
                          "method": "POST", "query": ""}
        assert "connection" not in headers  # kept open
    writer.write(request(f"/v1/http/runs/{RUN}/async"))
    assert orjson.loads((await read_response(reader))[2])["via"] == "lane"
    writer.close()


async def test_small_event_requests_take_the_short_path_too(served: Any) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("/e/some-key", b'{"name":"a/b"}'))
    answer = orjson.loads((await read_response(reader))[2])
    assert (answer["via"], answer["path"], answer["body"]) == ("lane", "/e/some-key", '{"name":"a/b"}')
    writer.close()


@pytest.mark.parametrize(("raw", "why"), [
    (request("/e/key", b"[" + b" " * lane.EVENTS_MAX_BODY + b"]"), "an event request over the short path's size"),
    (request("/e/key/more"), "a path under /e/key"),
    (request("/e/"), "no key"),
    (request(f"/v1/checkpoint/{RUN}/async?x=1"), "a query string"),
    (request(f"/v1/checkpoint/{RUN}/other"), "another path"),
    (request(f"/v1/checkpoint/{RUN}/async", method="PUT"), "another method"),
    (request("/v1/checkpoint/a/b/async"), "a run id with a slash"),
    (request(f"/v1/checkpoint/{RUN}/async", b"{}", "Expect: 100-continue", "Content-Length: 2"), "Expect"),
    (request(f"/v1/checkpoint/{RUN}/async", b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), "chunked"),
])
async def test_anything_else_goes_uvicorns_way(served: Any, raw: bytes, why: str) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    status, _, body = await read_response(reader)
    if status == 100:  # Expect: 100-continue, answered by uvicorn before the body is read
        status, _, body = await read_response(reader)
    assert status == 201, why
    assert orjson.loads(body)["via"] == "uvicorn", why
    writer.close()


async def test_a_path_that_is_not_ascii_gets_uvicorns_400(served: Any) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/checkpoint/\xc3\xa9/async HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    status, _, body = await read_response(reader)
    assert (status, body) == (400, b"Invalid HTTP request received.")
    writer.close()


async def test_connection_close_and_http_1_0_are_answered_then_closed(served: Any) -> None:
    _, port, _ = served
    for raw in (request(f"/v1/checkpoint/{RUN}/async", b"{}", "Connection: close"),
                request(f"/v1/checkpoint/{RUN}/async", version="1.0")):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        status, _, body = await read_response(reader)
        assert status == 201 and orjson.loads(body)["body"] == "{}"
        assert await closed(reader)
        writer.close()


async def test_pipelined_requests_are_answered_in_order(served: Any) -> None:
    """Three requests in one write, the short path's among uvicorn's: three answers, in order."""
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(f"/v1/checkpoint/{RUN}/async", b'"a"') + request("/other", b'"b"')
                 + request(f"/v1/checkpoint/{RUN}/async", b'"c"') + request(f"/v1/checkpoint/{RUN}/async", b'"d"'))
    bodies = [orjson.loads((await read_response(reader))[2]) for _ in range(4)]
    assert [b["body"] for b in bodies] == ['"a"', '"b"', '"c"', '"d"']
    assert bodies[0]["via"] == "lane" and bodies[1]["via"] == "uvicorn"
    # afterwards, the connection is idle again: the next checkpoint takes the short path
    writer.write(request(f"/v1/checkpoint/{RUN}/async", b'"e"'))
    assert orjson.loads((await read_response(reader))[2])["via"] == "lane"
    writer.close()


async def test_an_app_that_fails_gets_a_500_and_the_connection_closes(served: Any) -> None:
    _, port, _ = served
    for path in ("/v1/checkpoint/boom/async", "/v1/checkpoint/silent/async"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(path))
        status, headers, body = await read_response(reader)
        assert (status, body, headers["connection"]) == (500, b"Internal Server Error", "close")
        assert await closed(reader)
        writer.close()


async def test_each_answer_on_the_short_path_keeps_the_loop_awake_a_while() -> None:
    awake = KeepAwake(0.05, lambda: 1)
    async with lane_server(Recorder(), awake) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(f"/v1/checkpoint/{RUN}/async"))
        assert (await read_response(reader))[0] == 201
        assert awake.spins == 1
        while awake.spinning:
            await asyncio.sleep(0.01)
        writer.write(request("/e/some-key", b'{"name":"a/b"}'))
        assert (await read_response(reader))[0] == 201
        assert awake.spins == 2
        while awake.spinning:
            await asyncio.sleep(0.01)
        writer.write(request("/v1/checkpoint/boom/async"))  # a failure closes the connection instead
        assert (await read_response(reader))[0] == 500
        assert awake.spins == 2
        writer.close()


async def test_a_client_that_goes_away_mid_request_leaves_the_server_serving(served: Any) -> None:
    app, port, _ = served
    app.release.clear()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(f"/v1/checkpoint/{RUN}/async"))
    await asyncio.wait_for(app.entered.wait(), 30)
    writer.close()
    await asyncio.sleep(0.05)  # the server sees the connection go
    app.release.set()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(f"/v1/checkpoint/{RUN}/async"))
    assert (await read_response(reader))[0] == 201
    writer.close()


async def test_a_shutdown_mid_request_answers_it_then_closes() -> None:
    app = Recorder()
    app.release.clear()
    async with lane_server(app) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(f"/v1/checkpoint/{RUN}/async"))
        await asyncio.wait_for(app.entered.wait(), 30)
        server.should_exit = True  # graceful: in-flight requests are finished
        await asyncio.sleep(0.3)
        app.release.set()
        status, headers, body = await read_response(reader)
        assert status == 201 and orjson.loads(body)["via"] == "lane" and headers["connection"] == "close"
        assert await closed(reader)
        writer.close()


def test_an_unexpected_uvicorn_falls_back_to_its_own_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lane, "_UVICORN_STATE", (*lane._UVICORN_STATE, "renamed_in_a_later_release"))
    assert lane.lane_protocol(Recorder()) == "httptools"


# ----------------------------------------------------------------------- the real server


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("lane")
    port = free_port()
    proc = spawn(["dev", "--no-discovery", "--no-poll", "-p", str(port), "--host", "127.0.0.1",
                  "--sqlite-dir", str(tmp / "db")], tmp)
    try:
        wait_healthy(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        _, err = stop(proc)
        assert "Traceback" not in err, err


@pytest.mark.parametrize("extra", [
    {},  # no such run
    {"sec-fetch-site": "cross-site"},  # a web page's write: refused
    {"origin": "http://evil.example"},
    {"host": "evil.example"},  # DNS rebinding: refused by the dev server
])
def test_the_short_path_answers_as_the_usual_path_does(dev: str, extra: dict[str, str]) -> None:
    """The same checkpoint on the short path and (with a query string, which it leaves to
    uvicorn) on the usual one: the same status, body and headers, the guards' included."""
    body = {"run_id": RUN, "steps": [{"id": "s", "op": "StepRun", "data": 1}]}
    with httpx.Client() as client:
        short = client.post(f"{dev}/v1/checkpoint/{RUN}/async", json=body, headers=extra)
        usual = client.post(f"{dev}/v1/checkpoint/{RUN}/async?via=uvicorn", json=body, headers=extra)
    assert short.status_code == usual.status_code and short.status_code in (403, 404, 409, 421)
    assert short.json() == usual.json()
    for header in ("content-type", "x-inngest-server-kind", "server"):
        assert short.headers.get(header) == usual.headers.get(header), header


@pytest.mark.parametrize(("body", "extra"), [
    (b'{"name": "lane/sent", "data": {}}', {}),
    (b'{"name": "lane/sent"', {}),  # not JSON: 400
    (b'{"name": "lane/sent", "data": {}}', {"sec-fetch-site": "cross-site"}),
])
def test_events_on_the_short_path_are_answered_as_on_the_usual_one(dev: str, body: bytes,
                                                                   extra: dict[str, str]) -> None:
    with httpx.Client() as client:
        short = client.post(f"{dev}/e/key", content=body, headers=extra)
        usual = client.post(f"{dev}/e/key?via=uvicorn", content=body, headers=extra)
    assert short.status_code == usual.status_code
    a, b = short.json(), usual.json()
    assert len(a.get("ids", [])) == len(b.get("ids", [])) and {**a, "ids": []} == {**b, "ids": []}
    for header in ("content-type", "x-inngest-server-kind", "server"):
        assert short.headers.get(header) == usual.headers.get(header), header
    if short.status_code == 200:
        stored = client_events(dev, "lane/sent")
        assert set(a["ids"]) | set(b["ids"]) <= stored


def client_events(dev: str, name: str) -> set[str]:
    res = httpx.get(f"{dev}/v1/events", params={"name": name, "limit": 100})
    assert res.status_code == 200, res.text
    return {e["internal_id"] for e in res.json()["data"]}
