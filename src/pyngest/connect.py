"""Connect: serve functions over an outbound WebSocket instead of an HTTP endpoint.

    import asyncio, pyngest
    from pyngest.connect import connect

    asyncio.run(connect([(client, [fn_a, fn_b])]).start())

The worker starts a connection (``POST /v0/connect/start``), dials the gateway it was given,
announces its apps and functions (the server syncs them), then runs the steps the server sends:
each acknowledged, its lease extended while it runs, its reply sent back (over HTTP
``/v0/connect/flush`` when the WebSocket is gone by then). SIGTERM/SIGINT drain: the worker says
WORKER_PAUSE, finishes what it runs, then closes. A lost connection is started again.

Needs the ``websockets`` package (``pip install 'pyngest[connect]'``). Wire protocol: the
official SDKs' (docs/connect.md), from ``pyngest/protocol/connectpb/connect.proto``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import platform
import signal
import socket
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.protocol.signing import hash_signing_key
from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import ServerKind, Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, Response

log = logging.getLogger("pyngest.connect")

SUBPROTOCOL = "v0.connect.inngest.com"
FRAMEWORK = "connect"
RECONNECT_DELAY_S = 1.0
MAX_MESSAGE_BYTES = 5 * 1024 * 1024


class ConnectionState(enum.Enum):
    CONNECTING = "CONNECTING"
    ACTIVE = "ACTIVE"
    RECONNECTING = "RECONNECTING"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


def _seconds(duration: str, default: float) -> float:
    """A gateway duration ("10s", "500ms", "1m") in seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if duration.endswith(suffix):
            try:
                return float(duration[: -len(suffix)]) * scale
            except ValueError:
                return default
    return default


def _frame(kind: int, payload: Any = None) -> bytes:
    data = payload.SerializeToString() if payload is not None else b""
    return bytes(pb.ConnectMessage(kind=kind, payload=data).SerializeToString())  # type: ignore[arg-type]


def to_sdk_response(res: Response, req: pb.GatewayExecutorRequestData) -> pb.SDKResponse:
    """The handler's HTTP answer as a connect reply (200 DONE, 206 NOT_COMPLETED, else ERROR)."""
    status = {200: pb.DONE, 206: pb.NOT_COMPLETED}.get(res.status, pb.ERROR)
    headers = {k.lower(): v for k, v in res.headers.items()}
    reply = pb.SDKResponse(
        request_id=req.request_id, account_id=req.account_id, env_id=req.env_id, app_id=req.app_id,
        status=status, body=res.body, no_retry=headers.get("x-inngest-no-retry") == "true",
        sdk_version=config.VERSION, run_id=req.run_id,
        system_trace_ctx=req.system_trace_ctx, user_trace_ctx=req.user_trace_ctx,
    )
    version = headers.get("x-inngest-req-version")
    if version is not None and version.isdigit():
        reply.request_version = int(version)
    if "retry-after" in headers:
        reply.retry_after = headers["retry-after"]
    return reply


class WorkerConnection:
    """One worker: its connection to the server, started again when lost, until closed."""

    def __init__(
        self,
        apps: Sequence[tuple[Inngest, Sequence[Function[Any]]]],
        *,
        instance_id: str | None = None,
        max_worker_concurrency: int | None = None,
        shutdown_signals: Sequence[signal.Signals] | None = None,
        rewrite_gateway_endpoint: Any = None,
    ) -> None:
        if not apps:
            raise ValueError("connect() needs at least one (client, functions) pair")
        first = apps[0][0]
        for client, _ in apps:
            if client.api_origin != first.api_origin or client.mode is not first.mode:
                raise ValueError("every app of one connection must use the same server and mode")
        self._client = first
        self._handlers = {
            c.app_id: CommHandler(client=c, framework=FRAMEWORK, functions=list(fns), streaming=Streaming.DISABLE)
            for c, fns in apps
        }
        self._apps = [(c, list(fns)) for c, fns in apps]
        self.instance_id = instance_id or socket.gethostname()
        if max_worker_concurrency is None:
            env = os.environ.get("INNGEST_CONNECT_MAX_WORKER_CONCURRENCY")
            max_worker_concurrency = int(env) if env and env.isdigit() else None
        self.max_worker_concurrency = max_worker_concurrency
        self._signals = list(shutdown_signals) if shutdown_signals is not None else [signal.SIGTERM, signal.SIGINT]
        self._rewrite = rewrite_gateway_endpoint
        self.state = ConnectionState.CONNECTING
        self.connection_id: str | None = None
        self._closing = asyncio.Event()
        self._closed = asyncio.Event()
        self._inflight: dict[str, tuple[pb.GatewayExecutorRequestData, asyncio.Task[None]]] = {}
        self._unacked: dict[str, bytes] = {}  # replies sent, not yet acknowledged
        self._ws: Any = None
        self._send_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=10)

    # ------------------------------------------------------------------ public

    async def start(self) -> None:
        """Connect and serve until closed (SIGTERM/SIGINT or close())."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.close()))
        try:
            while not self._closing.is_set():
                try:
                    await self._connect_once()
                except Exception as exc:  # noqa: BLE001 - any failure: start a new connection
                    log.warning("connect: connection failed: %s; reconnecting", exc)
                if self._closing.is_set():
                    break
                self.state = ConnectionState.RECONNECTING
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=RECONNECT_DELAY_S)
            await self._finish_inflight()
        finally:
            await self._flush_unacked()
            await self._http.aclose()
            self.state = ConnectionState.CLOSED
            self._closed.set()

    async def close(self) -> None:
        """Drain: ask for no new work, finish the steps in flight, then close."""
        if self._closing.is_set():
            return
        self.state = ConnectionState.CLOSING
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._send(_frame(pb.WORKER_PAUSE))
        await self._finish_inflight()
        self._closing.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def closed(self) -> None:
        await self._closed.wait()

    # ------------------------------------------------------------------ one connection

    def _auth_headers(self) -> dict[str, str]:
        headers = {"content-type": "application/protobuf"}
        key = self._client.signing_key
        if self._client.mode is ServerKind.CLOUD and key:
            headers["authorization"] = f"Bearer {hash_signing_key(key)}"
        if self._client.env:
            headers["x-inngest-env"] = self._client.env
        return headers

    async def _start_request(self) -> pb.StartResponse:
        url = self._client.api_origin.rstrip("/") + "/v0/connect/start"
        res = await self._http.post(url, content=pb.StartRequest().SerializeToString(), headers=self._auth_headers())
        if res.status_code != 200:
            raise RuntimeError(f"POST {url} answered {res.status_code}: {res.text[:200]}")
        start = pb.StartResponse()
        start.ParseFromString(res.content)
        return start

    async def _connect_once(self) -> None:
        import websockets  # the optional dependency: pip install 'pyngest[connect]'

        start = await self._start_request()
        endpoint = self._rewrite(start.gateway_endpoint) if self._rewrite else start.gateway_endpoint
        async with websockets.connect(endpoint, subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                                      max_size=MAX_MESSAGE_BYTES) as ws:
            hello = await self._recv(ws)
            if hello.kind != pb.GATEWAY_HELLO:
                raise RuntimeError(f"expected GATEWAY_HELLO, got {pb.GatewayMessageType.Name(hello.kind)}")
            await ws.send(_frame(pb.WORKER_CONNECT, self._hello(start)))
            ready = await self._recv(ws)
            if ready.kind != pb.GATEWAY_CONNECTION_READY:
                err = pb.SystemError()
                with contextlib.suppress(Exception):
                    err.ParseFromString(ready.payload)
                raise RuntimeError(f"the gateway refused the worker: {err.message or pb.GatewayMessageType.Name(ready.kind)}")
            data = pb.GatewayConnectionReadyData()
            data.ParseFromString(ready.payload)
            self._ws = ws
            self.connection_id = start.connection_id
            self.state = ConnectionState.ACTIVE
            log.info("connect: connected (%s) to %s", start.connection_id, endpoint)
            beats = asyncio.create_task(self._every(_seconds(data.heartbeat_interval, 10.0), self._heartbeat))
            leases = asyncio.create_task(self._every(_seconds(data.extend_lease_interval, 5.0), self._extend_leases))
            try:
                await self._read(ws)
            finally:
                self._ws = None
                beats.cancel()
                leases.cancel()
            # replies the closed connection could not confirm go over HTTP
            await self._flush_unacked()

    def _hello(self, start: pb.StartResponse) -> pb.WorkerConnectRequestData:
        apps = []
        for client, fns in self._apps:
            configs = [cfg for fn in fns for cfg in fn.get_config("ws://connect")]
            app = pb.AppConfiguration(app_name=client.app_id, functions=orjson.dumps(configs))
            if client.app_version:
                app.app_version = client.app_version
            apps.append(app)
        msg = pb.WorkerConnectRequestData(
            connection_id=start.connection_id, instance_id=self.instance_id,
            auth_data=pb.AuthData(session_token=start.session_token, sync_token=start.sync_token),
            capabilities=orjson.dumps({"connect": "v1"}), apps=apps, framework=FRAMEWORK,
            sdk_version=config.VERSION, sdk_language=config.LANGUAGE,
            system_attributes=pb.SystemAttributes(cpu_cores=os.cpu_count() or 0, os=platform.system().lower()),
        )
        if self._client.env:
            msg.environment = self._client.env
        if self.max_worker_concurrency:
            msg.max_worker_concurrency = self.max_worker_concurrency
        msg.started_at.GetCurrentTime()
        return msg

    @staticmethod
    async def _recv(ws: Any) -> pb.ConnectMessage:
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                msg = pb.ConnectMessage()
                msg.ParseFromString(raw)
                return msg

    async def _read(self, ws: Any) -> None:
        import websockets

        try:
            async for raw in ws:
                if not isinstance(raw, bytes):
                    continue
                msg = pb.ConnectMessage()
                msg.ParseFromString(raw)
                if msg.kind == pb.GATEWAY_EXECUTOR_REQUEST:
                    self._on_request(msg.payload)
                elif msg.kind == pb.WORKER_REPLY_ACK:
                    ack = pb.WorkerReplyAckData()
                    ack.ParseFromString(msg.payload)
                    self._unacked.pop(ack.request_id, None)
                elif msg.kind == pb.WORKER_REQUEST_EXTEND_LEASE_ACK:
                    self._on_lease_ack(msg.payload)
                elif msg.kind == pb.GATEWAY_CLOSING:
                    log.info("connect: the gateway is closing; reconnecting")
                    return
        except websockets.ConnectionClosed:
            return

    async def _send(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        async with self._send_lock:
            await ws.send(data)

    async def _every(self, interval: float, what: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await what()

    async def _heartbeat(self) -> None:
        await self._send(_frame(pb.WORKER_HEARTBEAT))

    async def _extend_leases(self) -> None:
        for req, _ in list(self._inflight.values()):
            await self._send(_frame(pb.WORKER_REQUEST_EXTEND_LEASE, pb.WorkerRequestExtendLeaseData(
                request_id=req.request_id, account_id=req.account_id, env_id=req.env_id, app_id=req.app_id,
                function_slug=req.function_slug, step_id=req.step_id, run_id=req.run_id, lease_id=req.lease_id)))

    def _on_lease_ack(self, payload: bytes) -> None:
        ack = pb.WorkerRequestExtendLeaseAckData()
        ack.ParseFromString(payload)
        entry = self._inflight.get(ack.request_id)
        if entry is None:
            return
        if ack.HasField("new_lease_id"):
            entry[0].lease_id = ack.new_lease_id
        else:  # the lease is lost: the server gave the step to another attempt
            log.warning("connect: lost the lease of request %s; stopping it", ack.request_id)
            entry[1].cancel()

    # ------------------------------------------------------------------ requests

    def _on_request(self, payload: bytes) -> None:
        req = pb.GatewayExecutorRequestData()
        req.ParseFromString(payload)
        if self.state is ConnectionState.CLOSING:
            return  # draining: the server sends no more; one in the air runs elsewhere after its lease
        task = asyncio.create_task(self._run(req))
        self._inflight[req.request_id] = (req, task)
        task.add_done_callback(lambda _: self._inflight.pop(req.request_id, None))

    async def _run(self, req: pb.GatewayExecutorRequestData) -> None:
        with contextlib.suppress(Exception):
            await self._send(_frame(pb.WORKER_REQUEST_ACK, pb.WorkerRequestAckData(
                request_id=req.request_id, account_id=req.account_id, env_id=req.env_id, app_id=req.app_id,
                function_slug=req.function_slug, step_id=req.step_id, run_id=req.run_id)))
        handler = self._handlers.get(req.app_name)
        if handler is None:
            res = Response(500, {"x-inngest-no-retry": "false"},
                           orjson.dumps({"name": "Error", "message": f"this worker does not serve app {req.app_name!r}"}))
        else:
            query = {"fnId": req.function_slug, "stepId": req.step_id or "step"}
            headers = {"x-inngest-request-id": req.request_id, "x-inngest-job-id": req.job_id}
            # over connect there is no request signature: the session was authenticated instead
            res = await handler._post(Request("POST", req.request_payload, headers, query, ""), None)
        reply = to_sdk_response(res, req).SerializeToString()
        self._unacked[req.request_id] = reply
        try:
            await self._send(_frame(pb.WORKER_REPLY, pb.SDKResponse.FromString(reply)))
        except Exception:  # noqa: BLE001 - the connection is gone: flushed over HTTP below
            await self._flush_unacked()

    async def _finish_inflight(self) -> None:
        tasks = [t for _, t in self._inflight.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _flush_unacked(self) -> None:
        """Replies the gateway did not confirm: POST /v0/connect/flush (once each)."""
        url = self._client.api_origin.rstrip("/") + "/v0/connect/flush"
        for request_id, reply in list(self._unacked.items()):
            self._unacked.pop(request_id, None)
            try:
                res = await self._http.post(url, content=reply, headers=self._auth_headers())
                if res.status_code != 200:
                    log.warning("connect: flushing the reply to %s: HTTP %d", request_id, res.status_code)
            except httpx.HTTPError as exc:
                log.warning("connect: flushing the reply to %s failed: %s", request_id, exc)


def connect(
    apps: Sequence[tuple[Inngest, Sequence[Function[Any]]]],
    *,
    instance_id: str | None = None,
    max_worker_concurrency: int | None = None,
    shutdown_signals: Sequence[signal.Signals] | None = None,
    rewrite_gateway_endpoint: Any = None,
) -> WorkerConnection:
    """A worker serving ``apps`` over a connection to the server; ``await .start()`` runs it.

    ``instance_id`` names the worker (default: the host name); ``max_worker_concurrency`` caps the
    steps it runs at once (default ``INNGEST_CONNECT_MAX_WORKER_CONCURRENCY``, else no cap);
    ``shutdown_signals`` drain it (default SIGTERM and SIGINT); ``rewrite_gateway_endpoint`` maps
    the gateway URL the server hands out (behind a proxy)."""
    return WorkerConnection(apps, instance_id=instance_id, max_worker_concurrency=max_worker_concurrency,
                            shutdown_signals=shutdown_signals, rewrite_gateway_endpoint=rewrite_gateway_endpoint)

