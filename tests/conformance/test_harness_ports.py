"""The harness's own guard: a server whose port (picked free) is taken by another socket before
it binds it starts on another port; a restart does not move."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest
import requests

from .harness import App, Server, _listens

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


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers like an SDK app: what another test's app would, on a port picked for this one."""

    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        self.send_response(200)
        self.send_header("x-inngest-sdk", "impostor")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_an_app_whose_port_another_app_answers_on_moves_to_another(tmp_path: Path) -> None:
    impostor = http.server.HTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        taken = impostor.server_address[1]
        app = App("py_fastapi", tmp_path, "http://127.0.0.1:9", port=int(taken))
        app.start()
        try:
            assert app.port != taken
            assert app.proc is not None and _listens(app.proc.pid, app.port)
            assert not _listens(app.proc.pid, int(taken))
        finally:
            app.stop()
    finally:
        impostor.shutdown()


def test_a_server_whose_port_another_server_answers_on_moves_to_another(tmp_path: Path) -> None:
    with Server.running(tmp_path / "first") as first:
        srv = Server(tmp_path / "second", port=first.port)  # /health answers: the first server
        srv.workdir.mkdir()
        srv.start()
        try:
            assert srv.port != first.port
            assert srv.proc is not None and _listens(srv.proc.pid, srv.port)
        finally:
            srv.stop()
