"""Live connect workers and the requests in flight on them (docs/connect.md).

A worker is one WebSocket connection of an app's process. The hub picks a worker for each
execution request of a connect app, holds the request under a *lease* the worker extends while
it works, and turns the worker's reply into the same DriverResponse an HTTP app's answer gives —
the executor cannot tell the transports apart.

Every worker belongs to one environment (the one its start request's signing key and
``x-inngest-env`` selected): a run's requests go only to workers of the run's environment, so
one app id connected in two environments is two separate pools of workers.

A request belongs to the hub, not to the connection it went out on: a worker that reconnects
still extends its leases and replies (over the new connection or ``/v0/connect/flush``). A
request whose lease lapses (the worker died) fails as a transport error, and the executor
retries it like any failed attempt — on another worker. A reply that comes after that is
acknowledged and dropped: each attempt has one outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pyngest.clock import Clock, TimerHandle
from pyngest.protocol import headers as H
from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.protocol.ids import new_ulid
from pyngest.server.executor.backoff import parse_retry_after
from pyngest.server.executor.driver import CONNECT_URL_PREFIX, DriverResponse
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.registry import Registry

if TYPE_CHECKING:
    from pyngest.server.connect.peers import ConnectPeers

log = logging.getLogger("pyngest.connect")

# upstream's defaults (pkg/consts): the worker extends every 5 s a lease of 20 s
LEASE_MS = 20_000
EXTEND_LEASE_INTERVAL = "5s"
HEARTBEAT_INTERVAL = "10s"
HEARTBEAT_MS = 10_000
MISSED_HEARTBEATS = 3  # silent this many intervals: the connection is dead
# How long a request waits for a worker of its app to connect before the attempt fails.
NO_WORKER_WAIT_S = 30.0

_STATUS = {pb.DONE: 200, pb.NOT_COMPLETED: 206, pb.ERROR: 500}


def connect_url(app_name: str, fn_slug: str) -> str:
    """The step URL stored for a connect app's function: which app and function, never dialled."""
    return f"{CONNECT_URL_PREFIX}{quote(app_name, safe='')}?fnId={quote(fn_slug, safe='')}&stepId=step"


def parse_connect_url(url: str) -> tuple[str, str] | None:
    """(app name, function slug) of a connect step URL, or None for any other URL."""
    if not url.startswith(CONNECT_URL_PREFIX):
        return None
    parts = urlsplit(url)
    slug = dict(parse_qsl(parts.query)).get("fnId", "")
    return unquote(parts.path.lstrip("/")), slug


@dataclass(eq=False)
class Worker:
    """One live connection."""

    id: str  # the connection id handed out by /v0/connect/start
    instance_id: str
    apps: dict[str, str]  # app name -> app id
    send: Callable[[bytes], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    env_id: str = DEFAULT_ENV
    sdk_language: str = ""
    sdk_version: str = ""
    platform: str = ""
    capacity: int | None = None  # max_worker_concurrency; None: unlimited
    cpu_cores: int = 0
    mem_bytes: int = 0
    os: str = ""
    connected_ms: int = 0
    last_heartbeat_ms: int = 0
    draining: bool = False
    ready: bool = True  # False until WORKER_READY when the worker asked for manual readiness
    inflight: set[str] = field(default_factory=set)
    assigned: int = 0  # order of the last assignment (round robin among equals)

    @property
    def sdk(self) -> str:
        version = self.sdk_version if self.sdk_version.startswith("v") else f"v{self.sdk_version}"
        return f"{self.sdk_language}:{version}"

    def has_room(self) -> bool:
        return self.ready and not self.draining and (self.capacity is None or len(self.inflight) < self.capacity)


@dataclass(slots=True)
class Session:
    """A connection started on ``/v0/connect/start``, not yet opened on the gateway."""

    token: str
    env_id: str  # the environment the start request selected
    started_ms: int
    key_env: str | None = None  # the environment of the signing key it presented (None: any)
    env_named: bool = False  # the start request named an environment (x-inngest-env)


@dataclass(eq=False)
class Pending:
    request_id: str
    lease_id: str
    app_name: str
    app_id: str
    fn_slug: str
    run_id: str
    step_id: str
    worker_id: str
    started_ms: int
    env_id: str
    done: asyncio.Future[pb.SDKResponse | str]
    timer: TimerHandle | None = None
    acked: bool = False


class ConnectHub:
    def __init__(self, clock: Clock, registry: Registry) -> None:
        self.clock = clock
        self.registry = registry
        self.workers: dict[str, Worker] = {}
        self.pending: dict[str, Pending] = {}
        self._changed = asyncio.Event()
        self._order = itertools.count(1)
        # connection ids handed out by /start -> their session (checked at WORKER_CONNECT)
        self.sessions: dict[str, Session] = {}
        self.peers: ConnectPeers | None = None  # scale-out: the other processes' workers
        self.forwarded = {"out": 0, "in": 0}  # requests sent to / run for other processes

    def open_session(self, conn_id: str, session: Session) -> None:
        self.sessions[conn_id] = session

    def take_session(self, conn_id: str) -> Session | None:
        return self.sessions.pop(conn_id, None)

    def expire_sessions(self, before_ms: int) -> None:
        """Started connections never opened on the gateway are forgotten."""
        for conn_id in [c for c, s in self.sessions.items() if s.started_ms < before_ms]:
            self.take_session(conn_id)

    # ------------------------------------------------------------------ connections

    def add(self, worker: Worker) -> None:
        self.workers[worker.id] = worker
        self._wake()

    def remove(self, worker_id: str) -> None:
        """The connection is gone. Its requests keep their leases: the worker may come back."""
        if self.workers.pop(worker_id, None) is not None:
            self._wake()

    def mark_ready(self, worker_id: str) -> None:
        """WORKER_READY: a worker that asked for manual readiness takes requests from now on."""
        w = self.workers.get(worker_id)
        if w is not None and not w.ready:
            w.ready = True
            self._wake()

    def drain(self, worker_id: str) -> None:
        """WORKER_PAUSE: no new requests; those in flight finish."""
        w = self.workers.get(worker_id)
        if w is not None:
            w.draining = True
            self._wake()

    def workers_of(self, app_name: str, env_id: str = DEFAULT_ENV) -> list[Worker]:
        return [w for w in self.workers.values() if w.env_id == env_id and app_name in w.apps]

    def workers_in(self, env_id: str) -> list[Worker]:
        return [w for w in self.workers.values() if w.env_id == env_id]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _pick(self, app_name: str, env_id: str) -> Worker | None:
        """The worker with the most room left (least loaded for its capacity), round robin
        among equals."""
        best: Worker | None = None
        best_key: tuple[float, int] | None = None
        for w in self.workers.values():
            if w.env_id != env_id or app_name not in w.apps or not w.has_room():
                continue
            load = len(w.inflight) / w.capacity if w.capacity else len(w.inflight) / 1_000_000
            key = (load, w.assigned)
            if best_key is None or key < best_key:
                best, best_key = w, key
        return best

    async def _worker_for(self, app_name: str, env_id: str, wait_s: float) -> Worker | None:
        """A worker with room; waits while the app's workers are busy, and up to ``wait_s``
        while it has none here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            w = self._pick(app_name, env_id)
            if w is not None:
                return w
            changed = self._changed
            has_any = any(not x.draining for x in self.workers_of(app_name, env_id))
            if has_any:
                await changed.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), timeout=left)
            except TimeoutError:
                return None

    # ------------------------------------------------------------------ requests

    async def execute(self, *, url: str, step_id: str, body: bytes, run_id: str, job_id: str,
                      env_id: str = DEFAULT_ENV) -> DriverResponse:
        """Send one execution request to a worker of the app in the run's environment and wait
        for its reply: one connected here, else (scale-out) one connected to another process."""
        target = parse_connect_url(url)
        assert target is not None
        app_name = target[0]
        started = self.clock.now_ms()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NO_WORKER_WAIT_S
        while True:
            if self.peers is not None and not self.workers_of(app_name, env_id):
                forwarded = await self.peers.execute(url=url, step_id=step_id, body=body, run_id=run_id,
                                                     job_id=job_id, env_id=env_id, started_ms=started)
                if forwarded is not None:
                    self.forwarded["out"] += 1
                    return forwarded
            wait = 1.0 if self.peers is not None else NO_WORKER_WAIT_S
            worker = await self._worker_for(app_name, env_id, min(wait, max(0.0, deadline - loop.time())))
            if worker is not None:
                outcome = await self._dispatch(worker, target, step_id, body, run_id, job_id, started)
                ended = self.clock.now_ms()
                if isinstance(outcome, str):
                    return DriverResponse(status=0, transport_error=outcome, started_ms=started, ended_ms=ended)
                return self.response(outcome, worker.sdk, started, ended)
            if loop.time() >= deadline:
                return DriverResponse(
                    status=0, started_ms=started, ended_ms=self.clock.now_ms(),
                    transport_error=f"no connect worker of app {app_name!r} is connected in this run's "
                    f"environment: start one (inngest.connect / connect(), with the environment's signing "
                    f"key and INNGEST_ENV for a branch) and the step is retried")

    async def execute_forwarded(self, *, url: str, step_id: str, body: bytes, run_id: str,
                                job_id: str, env_id: str) -> tuple[pb.SDKResponse | str, str] | None:
        """A request another process forwarded: (the reply or why it failed, the worker's SDK);
        None when no worker of the app is connected here in that environment."""
        target = parse_connect_url(url)
        if target is None or not self.workers_of(target[0], env_id):
            return None
        worker = await self._worker_for(target[0], env_id, 0.0)
        if worker is None:
            return None
        self.forwarded["in"] += 1
        outcome = await self._dispatch(worker, target, step_id, body, run_id, job_id, self.clock.now_ms())
        return outcome, worker.sdk

    async def _dispatch(self, worker: Worker, target: tuple[str, str], step_id: str, body: bytes,
                        run_id: str, job_id: str, started: int) -> pb.SDKResponse | str:
        app_name, fn_slug = target
        request_id = new_ulid()
        app_id = worker.apps[app_name]
        fn = self.registry.find_function(fn_slug, worker.env_id)
        fn_id = fn.id if fn is not None else ""
        pending = Pending(
            request_id=request_id, lease_id=new_ulid(), app_name=app_name, app_id=app_id,
            fn_slug=fn_slug, run_id=run_id, step_id=step_id, worker_id=worker.id,
            started_ms=started, env_id=worker.env_id, done=asyncio.get_running_loop().create_future(),
        )
        self.pending[request_id] = pending
        worker.inflight.add(request_id)
        worker.assigned = next(self._order)
        self._arm(pending)
        msg = pb.GatewayExecutorRequestData(
            request_id=request_id, env_id=worker.env_id, app_id=app_id, app_name=app_name, function_id=fn_id,
            function_slug=fn_slug, step_id=step_id, request_payload=body, run_id=run_id,
            lease_id=pending.lease_id, job_id=job_id,
        )
        try:
            try:
                await worker.send(frame(pb.GATEWAY_EXECUTOR_REQUEST, msg))
            except Exception as exc:  # the connection broke as we sent: not delivered
                self._settle(pending, f"sending to connect worker {worker.instance_id} failed: {exc}")
            return await pending.done
        finally:
            self._forget(pending)

    def response(self, reply: pb.SDKResponse, sdk: str, started: int, ended: int) -> DriverResponse:
        """A worker's reply as the executor reads an HTTP answer."""
        status = _STATUS.get(reply.status, 500)
        if reply.status == pb.DONE and reply.no_retry:
            # The npm SDK sends its HTTP 400 (a non-retriable error of the function) as DONE with
            # no_retry; a function's result never carries no_retry. Read as the 400 it was.
            status = 400
        hdrs = {H.SDK: sdk, H.NO_RETRY: "true" if reply.no_retry else "false",
                H.REQ_VERSION: str(reply.request_version)}
        if reply.HasField("retry_after"):
            hdrs[H.RETRY_AFTER] = reply.retry_after
        return DriverResponse(
            status=status, headers=hdrs, body=reply.body, sdk=sdk, request_version=reply.request_version,
            no_retry=reply.no_retry, retry_at=parse_retry_after(hdrs.get(H.RETRY_AFTER), ended),
            started_ms=started, ended_ms=ended,
        )

    def _arm(self, pending: Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        pending.timer = self.clock.call_at(
            self.clock.now_ms() + LEASE_MS, lambda: self._lapse(pending.request_id, pending.lease_id))

    def _lapse(self, request_id: str, lease_id: str) -> None:
        p = self.pending.get(request_id)
        if p is None or p.lease_id != lease_id:
            return
        log.warning("connect: the lease of request %s (run %s, step %s) on worker connection %s lapsed; "
                    "the attempt fails and is retried", request_id, p.run_id, p.step_id, p.worker_id)
        self._settle(p, f"the connect worker running this step stopped answering (its lease of "
                        f"{LEASE_MS // 1000} s lapsed without an extension)")

    def _settle(self, pending: Pending, outcome: pb.SDKResponse | str) -> None:
        if not pending.done.done():
            pending.done.set_result(outcome)

    def _forget(self, pending: Pending) -> None:
        if pending.timer is not None:
            pending.timer.cancel()
        self.pending.pop(pending.request_id, None)
        w = self.workers.get(pending.worker_id)
        if w is not None:
            w.inflight.discard(pending.request_id)
        self._wake()

    # ------------------------------------------------------------------ worker messages

    def acked(self, request_id: str) -> None:
        p = self.pending.get(request_id)
        if p is not None:
            p.acked = True

    def holds(self, request_id: str) -> bool:
        """Whether the request is one this process sent (its lease is kept here)."""
        return request_id in self.pending

    def extend(self, request_id: str, lease_id: str) -> str | None:
        """A new lease id, or None when the request is no longer this worker's to finish."""
        p = self.pending.get(request_id)
        if p is None or p.lease_id != lease_id or p.done.done():
            return None
        p.lease_id = new_ulid()
        self._arm(p)
        return p.lease_id

    def reply(self, reply: pb.SDKResponse, reaches: Callable[[str], bool] | None = None) -> bool:
        """A worker's answer (over a WebSocket or /flush). False: no request waits for it (its
        lease lapsed and the attempt was retried, or it was answered already). ``reaches``: the
        environments the sender's key may answer for (/flush with another environment's key
        answers nothing)."""
        p = self.pending.get(reply.request_id)
        if p is None or p.done.done() or (reaches is not None and not reaches(p.env_id)):
            return False
        self._settle(p, reply)
        return True

    def in_flight_of(self, worker_id: str) -> int:
        return sum(1 for p in self.pending.values() if p.worker_id == worker_id)

    async def close_all(self) -> None:
        """The server stops: GATEWAY_CLOSING tells each worker to reconnect (to another process
        or once this one is back)."""
        for w in list(self.workers.values()):
            try:
                await w.send(frame(pb.GATEWAY_CLOSING))
                await w.close()
            except Exception:  # noqa: S110 - already gone
                pass


def frame(kind: int, payload: object | None = None) -> bytes:
    """A ConnectMessage: the kind and its serialized payload."""
    data = payload.SerializeToString() if payload is not None else b""  # type: ignore[attr-defined]
    return bytes(pb.ConnectMessage(kind=kind, payload=data).SerializeToString())  # type: ignore[arg-type]
