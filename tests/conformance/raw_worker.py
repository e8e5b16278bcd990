"""A bare connect worker speaking the protocol message by message (no SDK), for the cases an SDK
does not let a test time: a reply sent after the WebSocket went away (over ``/flush``, or over
a new connection)."""

from __future__ import annotations

from typing import Any

import orjson
import requests
import websockets

from pyngest.protocol.connectpb import connect_pb2 as pb

SUBPROTOCOL = "v0.connect.inngest.com"


def frame(kind: int, msg: Any = None) -> bytes:
    payload = msg.SerializeToString() if msg is not None else b""
    return bytes(pb.ConnectMessage(kind=kind, payload=payload).SerializeToString())


def start(server_url: str, headers: dict[str, str] | None = None) -> pb.StartResponse:
    res = requests.post(f"{server_url}/v0/connect/start", data=pb.StartRequest().SerializeToString(),
                        headers={"content-type": "application/protobuf", **(headers or {})}, timeout=10)
    res.raise_for_status()
    return pb.StartResponse.FromString(res.content)


def function(app: str, name: str, event: str) -> dict[str, Any]:
    return {"id": f"{app}-{name}", "name": name, "triggers": [{"event": event}],
            "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "ws", "url": "ws://connect"}}}}


async def handshake(server_url: str, app: str, functions: list[dict[str, Any]], instance: str,
                    headers: dict[str, str] | None = None,
                    environment: str | None = None) -> tuple[Any, pb.ConnectMessage]:
    """The WebSocket and the gateway's answer to WORKER_CONNECT. ``headers``: of the start
    request (a signing key, ``x-inngest-env``); ``environment``: WORKER_CONNECT's."""
    s = start(server_url, headers)
    ws = await websockets.connect(s.gateway_endpoint, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]
    await ws.recv()  # GATEWAY_HELLO
    await ws.send(frame(pb.WORKER_CONNECT, pb.WorkerConnectRequestData(
        connection_id=s.connection_id, instance_id=instance,
        auth_data=pb.AuthData(session_token=s.session_token, sync_token=s.sync_token),
        apps=[pb.AppConfiguration(app_name=app, functions=orjson.dumps(functions))],
        framework="connect", sdk_language="raw", sdk_version="v0", environment=environment)))
    return ws, pb.ConnectMessage.FromString(await ws.recv())


async def open_worker(server_url: str, app: str, functions: list[dict[str, Any]], instance: str,
                      headers: dict[str, str] | None = None, environment: str | None = None) -> Any:
    """A connected, synced worker's WebSocket (after GATEWAY_CONNECTION_READY)."""
    ws, ready = await handshake(server_url, app, functions, instance, headers, environment)
    assert ready.kind == pb.GATEWAY_CONNECTION_READY, pb.GatewayMessageType.Name(ready.kind)
    return ws


async def next_request(ws: Any) -> pb.GatewayExecutorRequestData:
    while True:
        msg = pb.ConnectMessage.FromString(await ws.recv())
        if msg.kind == pb.GATEWAY_EXECUTOR_REQUEST:
            req = pb.GatewayExecutorRequestData.FromString(msg.payload)
            await ws.send(frame(pb.WORKER_REQUEST_ACK, pb.WorkerRequestAckData(request_id=req.request_id)))
            return req


def done(req: pb.GatewayExecutorRequestData, output: Any) -> pb.SDKResponse:
    """The function returned ``output``."""
    return pb.SDKResponse(request_id=req.request_id, status=pb.DONE, body=orjson.dumps(output), request_version=1)
