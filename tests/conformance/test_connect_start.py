"""Connect in ``pyngest start``: the connect endpoints want the signing key (as upstream), the
gateway wants the session token ``/v0/connect/start`` handed out, and signed official-SDK
workers run their steps."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websockets

from pyngest.protocol.connectpb import connect_pb2 as pb

from .harness import CONNECT_KINDS, App, Server, free_port, hashed_signing_key

# the HTTP apps' cases, through signed workers
from .test_failures import test_retries_then_success  # noqa: F401
from .test_steps import (  # noqa: F401
    test_parallel_steps,
    test_sleep,
    test_steps_and_memoization_with_repeated_ids,
)
from .test_waits import test_invoke_by_id, test_wait_for_event_fulfilled  # noqa: F401

pytestmark = pytest.mark.conformance

SIGNING_KEY = secrets.token_hex(32)
EVENT_KEY = "connect-start-event-key"
KEY_SPELLING = {"py_connect": f"signkey-prod-{SIGNING_KEY}", "js_connect": f"signkey-test-{SIGNING_KEY}",
                "pyngest_connect": SIGNING_KEY}


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    srv = Server(workdir / "server", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY,
                 extra_args=["--connect-gateway-port", str(free_port())])
    srv.workdir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def signed_workers() -> Iterator[dict[str, App]]:
    started: dict[str, App] = {}
    yield started
    for w in started.values():
        w.stop()


@pytest.fixture(scope="module", params=CONNECT_KINDS)
def app(request: pytest.FixtureRequest, server: Server, workdir: Path, signed_workers: dict[str, App]) -> App:
    kind = request.param
    if kind not in signed_workers:
        w = App(kind, workdir, server.url, signing_key=KEY_SPELLING[kind], event_key=EVENT_KEY)
        signed_workers[kind] = w
        w.start()
    return signed_workers[kind]


def _start(server: Server, auth: str | None) -> requests.Response:
    headers = {"Content-Type": "application/protobuf"}
    if auth is not None:
        headers["Authorization"] = auth
    return requests.post(f"{server.url}/v0/connect/start", data=pb.StartRequest().SerializeToString(),
                         headers=headers, timeout=10)


def test_connect_endpoints_want_the_signing_key(server: Server) -> None:
    assert _start(server, None).status_code == 401
    assert _start(server, f"Bearer {secrets.token_hex(32)}").status_code == 401
    for path, method in (("/v0/connect/flush", "POST"), ("/v0/connect/envs/x/conns", "GET")):
        assert requests.request(method, f"{server.url}{path}", timeout=10).status_code == 401, path
    ok = _start(server, f"Bearer {hashed_signing_key(SIGNING_KEY)}")
    assert ok.status_code == 200, ok.text
    resp = pb.StartResponse()
    resp.ParseFromString(ok.content)
    assert resp.connection_id and resp.session_token
    assert resp.gateway_endpoint.startswith("ws://127.0.0.1:") and resp.gateway_endpoint.endswith("/v0/connect")


def test_gateway_refuses_a_worker_without_a_started_session(server: Server) -> None:
    ok = _start(server, f"Bearer {hashed_signing_key(SIGNING_KEY)}")
    start = pb.StartResponse()
    start.ParseFromString(ok.content)

    async def handshake(token: str) -> tuple[int, int | None]:
        async with websockets.connect(start.gateway_endpoint, subprotocols=["v0.connect.inngest.com"]) as ws:  # type: ignore[list-item]
            hello = pb.ConnectMessage()
            hello.ParseFromString(await ws.recv())
            connect = pb.WorkerConnectRequestData(
                connection_id=start.connection_id, instance_id="intruder",
                auth_data=pb.AuthData(session_token=token, sync_token=token),
                apps=[pb.AppConfiguration(app_name="intruder", functions=b"[]")])
            await ws.send(pb.ConnectMessage(kind=pb.WORKER_CONNECT, payload=connect.SerializeToString())
                          .SerializeToString())
            answer = pb.ConnectMessage()
            answer.ParseFromString(await ws.recv())
            try:
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                return answer.kind, closed.rcvd.code if closed.rcvd else None
            return answer.kind, None

    kind, code = asyncio.run(handshake("forged-" + start.session_token))
    assert kind == pb.SYNC_FAILED and code == 4001
