"""Connect with several server processes (scale-out, PostgreSQL + Redis): a worker connected to
one process runs the steps of runs any process schedules — a process owning a run's shard
but holding no worker of its app forwards the request to the process that does."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests import backends

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
