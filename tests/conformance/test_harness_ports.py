"""The harness's own guard: a server whose port (picked free) is taken by another socket before
it binds it starts on another port; a restart does not move."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from .harness import Server

pytestmark = pytest.mark.conformance


def test_a_port_taken_before_the_server_binds_it_is_given_up_for_another(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # bound, as a client connection's local port is: not listening
    try:
        srv = Server(tmp_path / "server", port=taken.getsockname()[1])
        srv.workdir.mkdir()
        srv.start()
        try:
            assert srv.port != taken.getsockname()[1]
            assert requests.get(f"{srv.url}/health", timeout=5).status_code == 200
            assert "cannot listen on 127.0.0.1" in srv.log_text()
            moved_to = srv.port
            srv.restart()
            assert srv.port == moved_to
        finally:
            srv.stop()
    finally:
        taken.close()
