"""Connect workers reconnect: the server restarts (killed, or stopped gracefully — it then tells
its workers GATEWAY_CLOSING) and each official-SDK worker starts a new connection by itself;
the next runs complete on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import CONNECT_KINDS, App, Server, free_port, new_tag, poll

pytestmark = pytest.mark.conformance


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "server", extra_args=["--connect-gateway-port", str(free_port())])
    srv.workdir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("kill", [True, False], ids=["killed", "stopped"])
@pytest.mark.parametrize("kind", CONNECT_KINDS)
def test_workers_reconnect_after_a_server_restart(server: Server, tmp_path: Path, kind: str, kill: bool) -> None:
    worker = App(kind, tmp_path, server.url)
    try:
        worker.start()
        api = server.api()
        before = api.wait_run(api.send(worker.event("who"), {"tag": new_tag()}))
        assert before["status"] == "Completed", before
        first = [c["id"] for c in worker.connections()]
        if kill:
            server.restart()  # SIGKILL, then start on the same ports and data
        else:
            server.stop()  # SIGTERM: GATEWAY_CLOSING to the worker
            server.start()
        poll(lambda: [c for c in worker.connections() if c["instance_id"] == worker.instance],
             what=f"{kind} to reconnect")
        assert [c["id"] for c in worker.connections()] != first  # a new connection
        after = api.wait_run(api.send(worker.event("who"), {"tag": new_tag()}))
        assert after["status"] == "Completed" and after["output"]["instance"] == worker.instance, after
        worker.proc.ensure_alive()  # type: ignore[union-attr]
    finally:
        worker.stop()
