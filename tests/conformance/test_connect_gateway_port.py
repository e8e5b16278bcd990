"""Where workers are sent: the gateway listens on ``--port + 1`` by default (upstream's 8289
beside 8288); when that port is taken, on the API port at ``/v0/connect``. Either way
``/v0/connect/start`` hands out the address that works, and a worker connects there."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from pyngest.protocol.connectpb import connect_pb2 as pb
from tests import backends

from .harness import App, _child_env, poll, server_command

pytestmark = pytest.mark.conformance


def _adjacent_free_ports() -> tuple[int, socket.socket]:
    """A free port P whose P + 1 is free too, with P + 1 held open (closed to free it)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        nxt = socket.socket()
        try:
            nxt.bind(("127.0.0.1", port + 1))
        except OSError:
            nxt.close()
            continue
        return port, nxt
    raise AssertionError("no two adjacent free ports")


@pytest.mark.parametrize("taken", [False, True], ids=["port+1", "port+1 taken"])
def test_start_hands_out_the_gateway_that_listens(tmp_path: Path, taken: bool) -> None:
    port, held = _adjacent_free_ports()
    if not taken:
        held.close()
    log = tmp_path / "server.log"
    argv = [*server_command(), "dev", "-p", str(port), "--no-discovery", "--sqlite-dir", str(tmp_path / "data")]
    if backends.BACKEND == "postgres":
        schema = backends.schema_for(tmp_path)
        backends.create_schema_sync(schema)
        argv += ["--postgres-uri", backends.postgres_uri(schema), "--redis-uri", backends.REDIS_URI]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, env=_child_env({}), stdout=sink, stderr=subprocess.STDOUT)
    worker = App("py_connect", tmp_path, f"http://127.0.0.1:{port}")
    try:
        poll(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok, what="the server")
        res = requests.post(f"http://127.0.0.1:{port}/v0/connect/start", data=pb.StartRequest().SerializeToString(),
                            headers={"content-type": "application/protobuf"}, timeout=10)
        endpoint = urlsplit(pb.StartResponse.FromString(res.content).gateway_endpoint)
        assert (endpoint.scheme, endpoint.path) == ("ws", "/v0/connect")
        assert endpoint.port == (port if taken else port + 1), (endpoint, log.read_text())
        worker.start()  # it connects where it was sent
    finally:
        worker.stop()
        proc.terminate()
        proc.wait(30)
        held.close()
