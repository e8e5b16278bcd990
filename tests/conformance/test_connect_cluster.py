"""Connect with several server processes (scale-out, PostgreSQL + Redis): a worker connected to
one process runs the steps of runs any process schedules — a process owning a run's shard
but holding no worker of its app forwards the request to the process that does, in the run's
environment; a worker that reconnects to another process in the middle of a step goes on
extending its lease there, and the extensions reach the process holding the request."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pyngest.protocol.connectpb import connect_pb2 as pb
from tests import backends

from . import raw_worker
from .harness import App, Server, free_port, new_tag

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(backends.BACKEND != "postgres", reason="several processes share PostgreSQL + Redis"),
]


SIGNING_KEY = secrets.token_hex(32)


@pytest.mark.parametrize(("kind", "mode"), [("py_connect", "dev"), ("js_connect", "dev"), ("py_connect", "start")])
def test_worker_on_one_process_runs_steps_of_runs_every_process_owns(tmp_path: Path, kind: str, mode: str) -> None:
    """In start mode the processes forward with the signing key (the forward route wants it)."""
    key = SIGNING_KEY if mode == "start" else None
    schema = backends.new_schema_name()
    backends.create_schema_sync(schema)
    uri = backends.postgres_uri(schema)
    servers = []
    for i in range(2):
        workdir = tmp_path / f"node{i}"
        workdir.mkdir()
        servers.append(Server(workdir, mode=mode, signing_key=key, event_key="ek" if key else None, extra_args=[
            *(["--no-poll"] if mode == "dev" else []), "--postgres-uri", uri, "--redis-uri", backends.REDIS_URI,
            "--connect-gateway-port", str(free_port())]))
    for server in servers:
        server.start()
    a, b = servers
    worker = App(kind, tmp_path, b.url, signing_key=key, event_key="ek" if key else None)  # on process B only
    try:
        worker.start()
        api = a.api()  # events go to process A
        events = [api.send(worker.event("who"), {"tag": f"{new_tag()}-{i}"}) for i in range(16)]
        runs = [api.wait_run(e) for e in events]
        assert all(r["status"] == "Completed" for r in runs), runs
        assert {r["output"]["instance"] for r in runs} == {worker.instance}
        # A holds no worker; it owned (some of) these runs' shards and forwarded their requests
        on_a = api.session.get(f"{a.url}/v0/connect/envs/Production/conns", timeout=10).json()
        on_b = api.session.get(f"{b.url}/v0/connect/envs/Production/conns", timeout=10).json()
        assert on_a["data"] == [] and on_a["forwarded"]["out"] > 0, on_a
        assert on_b["forwarded"]["in"] == on_a["forwarded"]["out"], (on_a, on_b)
    finally:
        worker.stop()
        for server in servers:
            server.stop()


@contextmanager
def _cluster(tmp_path: Path, mode: str, key: str | None) -> Iterator[list[Server]]:
    """Two processes sharing one fresh PostgreSQL schema and Redis."""
    schema = backends.new_schema_name()
    backends.create_schema_sync(schema)
    uri = backends.postgres_uri(schema)
    servers = []
    for i in range(2):
        workdir = tmp_path / f"node{i}"
        workdir.mkdir()
        servers.append(Server(workdir, mode=mode, signing_key=key, event_key="ek" if key else None, extra_args=[
            *(["--no-poll"] if mode == "dev" else []), "--postgres-uri", uri, "--redis-uri", backends.REDIS_URI,
            "--connect-gateway-port", str(free_port())]))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_forwarding_keeps_the_runs_environment(tmp_path: Path) -> None:
    """One app id with a worker in production and one in a branch, both on process B; A forwards
    each environment's requests to that environment's worker."""
    with _cluster(tmp_path, "start", SIGNING_KEY) as (a, b):
        app_id, branch = f"cx-fwd-{new_tag()}", "preview-fwd"
        workers = [App("py_connect", tmp_path, b.url, signing_key=SIGNING_KEY, event_key="ek", app_id=app_id,
                       env={"CONFORMANCE_PREFIX": app_id, "CONNECT_INSTANCE_ID": f"fwd-{name}",
                            **({"INNGEST_ENV": name} if name != "Production" else {})})
                   for name in ("Production", branch)]
        try:
            for w in workers:
                w.start()
            prod_api = a.api()
            branch_api = prod_api.in_env(branch)
            sent = [(where, w, where.send(w.event("who"), {"tag": f"{new_tag()}-{i}"}))
                    for i in range(6) for where, w in ((prod_api, workers[0]), (branch_api, workers[1]))]
            for where, w, event_id in sent:
                run = where.wait_run(event_id)
                assert run["status"] == "Completed" and run["output"]["instance"] == w.instance, run
            on_a = prod_api.session.get(f"{a.url}/v0/connect/envs/Production/conns", timeout=10).json()
            assert on_a["data"] == [] and on_a["forwarded"]["out"] > 0, on_a
        finally:
            for w in workers:
                w.stop()


def test_lease_extensions_after_a_reconnect_to_another_process_reach_the_holder(tmp_path: Path) -> None:
    """A bare worker gets a request over process A, reconnects to process B in the middle of the
    step, extends the lease there (A holds the request: B passes the extension on and the worker
    gets a new lease id; a stale lease id gets none) and replies there."""
    with _cluster(tmp_path, "dev", None) as (a, b):
        app = f"cx-lease-{new_tag()}"
        fns = [raw_worker.function(app, "fn", f"{app}/go")]
        api = a.api()

        async def scenario() -> tuple[str, str]:
            ws = await raw_worker.open_worker(a.url, app, fns, "lease-1")
            event_id = api.send(f"{app}/go", {"n": 1})
            req = await raw_worker.next_request(ws)
            await ws.close()  # the worker moves to process B while the step runs
            ws = await raw_worker.open_worker(b.url, app, fns, "lease-1")
            leases = []
            for lease_id in (req.lease_id, req.lease_id):  # the second time: stale
                await ws.send(raw_worker.frame(pb.WORKER_REQUEST_EXTEND_LEASE, pb.WorkerRequestExtendLeaseData(
                    request_id=req.request_id, lease_id=lease_id, app_id=req.app_id,
                    function_slug=req.function_slug, run_id=req.run_id)))
                while (msg := pb.ConnectMessage.FromString(await ws.recv())).kind != pb.WORKER_REQUEST_EXTEND_LEASE_ACK:
                    pass
                ack = pb.WorkerRequestExtendLeaseAckData.FromString(msg.payload)
                assert ack.request_id == req.request_id
                leases.append(ack.new_lease_id if ack.HasField("new_lease_id") else "")
            assert leases[0] and leases[0] != req.lease_id, leases  # extended by the holder
            assert leases[1] == "", leases  # the old lease id is no longer the worker's
            await ws.send(raw_worker.frame(pb.WORKER_REPLY, raw_worker.done(req, {"moved": True})))
            while pb.ConnectMessage.FromString(await ws.recv()).kind != pb.WORKER_REPLY_ACK:
                pass
            await ws.close()
            return event_id, req.run_id

        event_id, run_id = asyncio.run(scenario())
        run = api.wait_run(event_id)
        assert run["run_id"] == run_id and run["status"] == "Completed" and run["output"] == {"moved": True}, run
