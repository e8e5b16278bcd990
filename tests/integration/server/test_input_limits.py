"""Limits on input (issue 13; docs/security.md "Limits on input"): body sizes, events per call,
nesting, GraphQL query size/depth/cost, expression size, app URL schemes, and the OpenAPI
document listing every status these answer with."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from graphql import get_introspection_query

from pyngest.protocol.signing import hash_signing_key
from tests.integration.server.harness import Harness, function_config
from tests.integration.server.test_cli import KEY, free_port, spawn, stop, wait_healthy

EVENT_LIMIT = 2048
REQUEST_LIMIT = 8192


# ------------------------------------------------------------------ a real server, raw HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    proc = spawn(["start", "-p", str(port), "--sqlite-dir", str(tmp / "db"), "--max-event-size", str(EVENT_LIMIT),
                  "--max-request-size", str(REQUEST_LIMIT)], tmp,
                 env={"INNGEST_SIGNING_KEY": KEY, "INNGEST_EVENT_KEY": "good"})
    try:
        wait_healthy(port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def _connect(server: str) -> socket.socket:
    host, port = server.split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Read one HTTP/1.1 response (with a Content-Length) from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return status, headers, orjson.loads(rest[:length])


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def _head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json", *extra, "", ""]
    return "\r\n".join(lines).encode()


def test_a_wrong_key_is_refused_before_the_body_is_read(server: str) -> None:
    """Row 3: 100 MB announced to a wrong key: 401 with not one byte of the body sent."""
    with _connect(server) as sock:
        sock.sendall(_head("/e/wrong", "Content-Length: 104857600"))
        status, headers, body = _response(sock)
        assert status == 401 and "Event key not found" in body["error"]
        # the body is not wanted: the connection ends rather than take it in
        assert headers.get("connection") == "close" and _closed(sock)


def test_an_announced_oversize_body_is_refused_before_it_is_read(server: str) -> None:
    with _connect(server) as sock:
        sock.sendall(_head("/e/good", "Content-Length: 104857600"))
        status, headers, body = _response(sock)
        assert status == 413 and body["ids"] == [] and body["status"] == 413
        assert f"over the size limit of {REQUEST_LIMIT} bytes" in body["error"]
        assert headers.get("connection") == "close" and _closed(sock)


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(server: str) -> None:
    """No Content-Length: the answer comes once the limit is passed, though the body never ends."""
    with _connect(server) as sock:
        sock.sendall(_head("/e/good", "Transfer-Encoding: chunked"))
        chunk = b"[" + b" " * 1023
        for _ in range(REQUEST_LIMIT // len(chunk) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = _response(sock)
    assert status == 413 and "no event was stored" in body["error"]
    # within the limits, events are taken as before
    ok = httpx.post(f"http://{server}/e/good", json=[{"name": "ok/one", "data": {"pad": "x" * 1500}}] * 4)
    assert ok.status_code == 200 and len(ok.json()["ids"]) == 4


def test_other_routes_cap_their_bodies_before_reading(server: str) -> None:
    """Every route: an announced body over the server-wide cap is refused unread."""
    with _connect(server) as sock:
        sock.sendall(_head("/fn/register", "Content-Length: 1099511627776"))
        status, _, body = _response(sock)
    assert status == 413 and "size limit" in body["error"]


def test_checkpoints_skip_the_router_but_not_the_limits_nor_the_key(server: str) -> None:
    """``POST /v1/checkpoint/{run}/async`` goes straight to its route function (a fast path):
    a chunked body is still cut off at the server-wide cap, and the signing key still needed."""
    from pyngest.server.api.limits import DEFAULT_MAX_BODY_BYTES

    run = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
    bearer = f"Bearer {hash_signing_key(KEY)}"
    with _connect(server) as sock:
        sock.sendall(_head(f"/v1/checkpoint/{run}/async", "Transfer-Encoding: chunked", f"Authorization: {bearer}"))
        chunk = b" " * (1 << 20)
        sent = 0
        try:
            while sent <= DEFAULT_MAX_BODY_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except ConnectionError:
            pass  # the server answered and closed while the body was still coming
        status, _, body = _response(sock)
    assert status == 413 and "size limit" in body["error"]
    res = httpx.post(f"http://{server}/v1/checkpoint/{run}/async", json={"steps": []})
    assert res.status_code == 401 and res.headers["x-inngest-server-kind"] == "cloud"
    auth = {"authorization": bearer}
    res = httpx.post(f"http://{server}/v1/http/runs/{run}/async", json={"steps": "nope"}, headers=auth)
    assert res.status_code == 400 and "'steps' array" in res.json()["error"]
    res = httpx.post(f"http://{server}/v1/checkpoint/{run}/async", json={"steps": []}, headers=auth)
    assert res.status_code == 404 and res.json()["error"] == f"run {run} not found"


def test_graphql_and_rest_sends_take_the_event_api_request_limit(server: str) -> None:
    auth = {"Authorization": f"Bearer {hash_signing_key(KEY)}"}
    big = [{"name": "ok/big", "data": {"pad": "x" * 1500}}] * 6  # every event fits, the call does not
    rest = httpx.post(f"http://{server}/v1/events", json=big, headers=auth)
    assert rest.status_code == 413 and "size limit" in rest.json()["error"]
    gql = httpx.post(f"http://{server}/v0/gql", headers=auth, json={
        "query": "mutation($e: [Map!]!) { sendEvents(events: $e) }", "variables": {"e": big * 20}})
    assert gql.status_code == 413 and "size limit" in gql.json()["errors"][0]["message"]


# ----------------------------------------------------------------------- in process


@pytest.fixture
async def limited(tmp_path: Path) -> Any:
    h = Harness(tmp_path, max_event_bytes=EVENT_LIMIT, max_request_bytes=10 * 1024 * 1024)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


async def _stored_names(h: Harness) -> list[str]:
    assert h.http is not None
    return sorted(e["name"] for e in (await h.http.get("/v1/events")).json()["data"])


async def _gql(h: Harness, query: str, **variables: Any) -> httpx.Response:
    assert h.http is not None
    return await h.http.post("/v0/gql", json={"query": query, "variables": variables})


async def test_rest_and_graphql_sends_validate_like_the_event_api(limited: Harness) -> None:
    """Row 4: events per call, event size and nesting on /v1/events and sendEvents; all or nothing."""
    http = limited.http
    assert http is not None
    many = [{"name": "ok/many"}] * 5001
    resp = await http.post("/v1/events", json=many)
    assert resp.status_code == 400 and resp.json()["error"].startswith("Cannot have more than 5000 events")
    sent = await _gql(limited, "mutation($e: [Map!]!) { sendEvents(events: $e) }", e=many)
    assert "Cannot have more than 5000 events" in sent.json()["errors"][0]["message"]
    big = {"name": "ok/big", "data": {"pad": "x" * EVENT_LIMIT}}
    resp = await http.post("/v1/events", json=[{"name": "ok/first"}, big])
    assert resp.status_code == 400 and resp.json()["error"].startswith(
        f"event 2: Event is over the max size: Max {EVENT_LIMIT} bytes")
    sent = await _gql(limited, "mutation($e: [Map!]!) { sendEvents(events: $e) }", e=[big])
    assert "Event is over the max size" in sent.json()["errors"][0]["message"]
    assert await _stored_names(limited) == []
    assert (await http.post("/v1/events", json=[{"name": "ok/first"}] * 5000)).status_code == 200


async def test_deep_event_data_is_a_400_naming_the_limit_and_keeps_what_came_before(limited: Harness) -> None:
    """Row 8: nesting past the limit (100) is a 400 on every path, never a 500; the Event API
    stores the events before it, as with any invalid event."""
    http = limited.http
    assert http is not None
    for levels in (150, 300, 900):
        resp = await http.post("/e/key", json=[{"name": "ok/before"}, {"name": "x/deep", "data": _deep(levels)},
                                               {"name": "ok/after"}])
        body = resp.json()
        assert resp.status_code == 400 and len(body["ids"]) == 1, body
        assert body["error"].startswith("event 2: event is nested too deeply") and "at most 100 levels" in body["error"]
        one = await http.post("/e/key", json={"name": "x/deep", "data": _deep(levels)})
        assert one.status_code == 400 and "at most 100 levels" in one.json()["error"]
        rest = await http.post("/v1/events", json={"name": "x/deep", "data": _deep(levels)})
        assert rest.status_code == 400 and "at most 100 levels" in rest.json()["error"]
    assert await _stored_names(limited) == ["ok/before"] * 3
    # invoking takes the same limits on the payload it turns into an event
    await limited.register(function_config(limited.app, "inv"))
    for url in ("/invoke/test-inv", "/v1/functions/test-inv/invoke"):
        resp = await http.post(url, json={"data": _deep(300)})
        assert resp.status_code == 400 and "at most 100 levels" in resp.json()["error"], resp.text
        resp = await http.post(url, json={"data": {"pad": "x" * EVENT_LIMIT}})
        assert resp.status_code == 400 and "Event is over the max size" in resp.json()["error"], resp.text
    signal = await http.post("/v1/signals", json={"signal": "s", "data": _deep(300)})
    assert signal.status_code == 400 and "more than 100 levels" in signal.json()["error"]
    inv = await _gql(limited, "mutation($d: Map) { invokeFunction(functionSlug: \"test-inv\", data: $d) }", d=_deep(300))
    assert "at most 100 levels" in inv.json()["errors"][0]["message"]
    # at the limit: the event object, its data and 98 more levels
    assert (await http.post("/e/key", json={"name": "ok/deep", "data": _deep(98)})).status_code == 200
    event_id = (await http.get("/v1/events")).json()["data"][0]["internal_id"]
    assert (await http.get(f"/v1/events/{event_id}")).status_code == 200


@pytest.mark.parametrize("expression, limit", [
    (" || ".join(f"event.data.n == {i}" for i in range(300)), "more than 150 operators"),
    ("(" * 300 + "event.data.n == 1" + ")" * 300, "nests brackets more than 32 deep"),
    # found re-probing: 2 MB of expression took seconds to compile, on the event loop
    ('event.data.s == "' + "a" * 2_000_000 + '"', "characters long; the limit is 16384"),
])
async def test_a_huge_trigger_expression_is_a_sync_error_naming_the_limit(
        limited: Harness, expression: str, limit: str) -> None:
    """Row 8: a trigger expression of 300 terms or parentheses is refused at sync (4xx)."""
    assert limited.http is not None
    config = function_config(limited.app, "big", triggers=[{"event": "test/big", "expression": expression}])
    resp = await limited.http.post("/fn/register", json={
        "appName": "huge", "url": limited.app.url, "sdk": "py:v0.5.19", "functions": [config]})
    assert 400 <= resp.status_code < 500 and limit in resp.text, resp.text


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/x", "ftp://h/x", "http://", "localhost:3000",
                                 "http://127.0.0.1:99999/api"])
async def test_app_urls_must_be_http(limited: Harness, url: str) -> None:
    """Row 11: /fn/register, /v1/apps, PATCH /v1/apps/{id} and GraphQL createApp refuse non-http(s) URLs."""
    http = limited.http
    assert http is not None
    resp = await http.post("/fn/register", json={"appName": "bad", "url": url, "sdk": "py:v0.5.19", "functions": []})
    assert resp.status_code == 400 and "Invalid request: 'url'" in resp.json()["error"], resp.text
    resp = await http.post("/v1/apps", json={"url": url})
    assert resp.status_code == 400 and "the app URL" in resp.json()["error"]
    created = (await _gql(limited, "mutation($u: String!) { createApp(input: {url: $u}) { id } }", u=url)).json()
    assert "the app URL" in created["errors"][0]["message"]
    await limited.register(function_config(limited.app, "ok"))
    resp = await http.patch("/v1/apps/test", json={"url": url})
    assert resp.status_code == 400 and "the app URL" in resp.json()["error"]
    assert sorted(a["name"] for a in (await http.get("/v1/apps")).json()["data"]) == ["test"]


async def test_graphql_query_limits(limited: Harness) -> None:
    """Row 7: size (413, checked before parsing), bracket nesting, depth and field count (400);
    errors do not echo a huge query back."""
    huge = await _gql(limited, "{ " + "apps { id } " * 20_000 + "}")
    assert huge.status_code == 413 and "characters long; the limit is 16384" in huge.json()["errors"][0]["message"]
    assert len(huge.content) < 1000
    nested = await _gql(limited, "{" * 40 + "}" * 40)
    assert nested.status_code == 400 and "more than 32 levels" in nested.json()["errors"][0]["message"]
    # fields within fields through fragments: the depth counts them expanded
    chain = " ".join(f"fragment F{i} on Function {{ app {{ functions {{ ...F{i + 1} }} }} }}" for i in range(12))
    deep = await _gql(limited, "{ functions { ...F0 } } " + chain + " fragment F12 on Function { id }")
    assert deep.status_code == 400 and "more than 20 levels" in deep.json()["errors"][0]["message"]
    # fragments spread within fragments multiply the fields
    bomb = " ".join(f"fragment B{i} on App {{ {' '.join(f'a{j}: functions {{ app {{ ...B{i + 1} }} }}' for j in range(4))} }}"
                    for i in range(6))
    many = await _gql(limited, "{ apps { ...B0 } } " + bomb + " fragment B6 on App { id }")
    assert many.status_code == 400 and "more than 500 fields" in many.json()["errors"][0]["message"]
    # counted before validation, whose cost grows with the square of the fields
    same = await _gql(limited, "{ " + "a: apps { id } " * 21 + "}")
    assert same.status_code == 400 and "selects 'a' more than 20 times" in same.json()["errors"][0]["message"]
    spread = await _gql(limited, "{ apps { ...I ...J } } fragment I on App { " + "id " * 11 + "} fragment J on App { "
                        + "id " * 10 + "}")
    assert spread.status_code == 400 and "selects 'id' more than 20 times" in spread.json()["errors"][0]["message"]
    cycle = await _gql(limited, "fragment A on App { ...A id } { apps { ...A } }")
    assert "Cannot spread fragment 'A' within itself" in cycle.json()["errors"][0]["message"]
    long_name = await _gql(limited, "{ " + "x" * 15_000 + " }")
    assert long_name.status_code == 200 and len(long_name.content) < 2000
    assert "more characters" in long_name.json()["errors"][0]["message"]
    # the dashboard and GraphQL tools keep working
    intro = await _gql(limited, get_introspection_query(descriptions=True))
    assert intro.status_code == 200 and intro.json()["data"]["__schema"]["queryType"]
    assert (await _gql(limited, "{ apps { id name functions { id } } }")).json() == {"data": {"apps": []}}


async def test_openapi_documents_every_status(limited: Harness) -> None:
    """Row 12: the statuses found missing, and the new 413s."""
    assert limited.http is not None
    doc = (await limited.http.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in ("/v1/cancellations", "/v1/replays"):
        assert "404" in paths[path]["post"]["responses"] and "404" in paths[path]["get"]["responses"]
    assert {"400", "401", "413", "503"} <= set(paths["/v0/gql"]["post"]["responses"])
    assert {"200", "400", "401", "413", "503"} <= set(paths["/e/{key}"]["post"]["responses"])
    for path, ops in paths.items():
        for method, op in ops.items():
            assert {"401", "413", "503"} <= set(op["responses"]), (method, path)
    # and they are answered: an unknown function is a 404 on both
    for path, body in (("/v1/cancellations", {"function_id": "nope", "started_before": "2030-01-01T00:00:00Z"}),
                       ("/v1/replays", {"function_id": "nope", "from": "2020-01-01T00:00:00Z", "statuses": ["Failed"]})):
        assert (await limited.http.post(path, json=body)).status_code == 404
    assert (await limited.http.post("/v0/gql", content=b"not json")).status_code == 400
