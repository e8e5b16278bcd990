"""A pyngest server in a subprocess, plus a helper that serves an app on a local port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

TERMINAL = ("Completed", "Failed", "Cancelled")
# As the official SDK's dev_server: the port clients in dev mode look for by default.
DEFAULT_PORT = 8288


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunResult:
    run_id: str
    status: str
    output: Any
    raw: dict[str, Any]


class DevServer:
    """``pyngest dev`` (or ``pyngest start`` with keys) on a free port, in its own process.

    Args:
        port: port to listen on (default: a free one).
        retry_interval: seconds between step retries (default 1, so tests don't wait for the
            production backoff table).
        signing_key, event_key: start in production mode (``pyngest start``) with these keys.
        extra_args: more CLI flags.
        enabled: False makes ``start`` and ``stop`` do nothing (a server started elsewhere).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        retry_interval: int = 1,
        signing_key: str | None = None,
        event_key: str | None = None,
        extra_args: tuple[str, ...] = (),
        enabled: bool = True,
    ) -> None:
        self.port = port
        self.enabled = enabled
        self.retry_interval = retry_interval
        self.signing_key = signing_key
        self.event_key = event_key
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._log: Any = None

    @classmethod
    def from_env(cls) -> DevServer:
        """The server the docs' ``dev_server.server`` is: on ``DEV_SERVER_PORT`` (default 8288,
        where a client with ``INNGEST_DEV=1`` looks), not started if ``DEV_SERVER_ENABLED=0``."""
        port = os.environ.get("DEV_SERVER_PORT")
        return cls(port=int(port) if port else DEFAULT_PORT, enabled=os.environ.get("DEV_SERVER_ENABLED") != "0")

    @property
    def origin(self) -> str:
        """The official SDK's name for :attr:`url`."""
        return self.url

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the dev server is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        if self.running or not self.enabled:
            return
        if self.port is None:
            self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="pyngest-dev-")
        production = self.signing_key is not None
        cmd = [
            sys.executable, "-m", "pyngest.server.cli", "start" if production else "dev",
            "-p", str(self.port), "--host", "127.0.0.1",
            "--sqlite-dir", self._dir.name, "--retry-interval", str(self.retry_interval),
            "--shutdown-grace", "2",
        ]
        if not production:
            cmd += ["--no-discovery", "--no-poll"]
        else:
            cmd += ["--signing-key", self.signing_key or "", "--event-key", self.event_key or "test-event-key"]
        cmd += list(self.extra_args)
        self._log = open(os.path.join(self._dir.name, "server.log"), "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the pyngest server exited at start:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the pyngest server did not answer within {timeout_s}s")

    def log(self) -> str:
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir.name, "server.log"), "rb") as f:
                return f.read().decode(errors="replace")[-20_000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    # -- helpers for tests ----------------------------------------------------------------------

    def sync(self, app_url: str) -> None:
        """Ask the app to sync itself with this server (the PUT a server would send)."""
        res = httpx.put(app_url, timeout=30)
        if res.status_code != 200:
            raise RuntimeError(f"sync of {app_url} failed: HTTP {res.status_code} {res.text}")

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        headers = {"authorization": f"Bearer {self.signing_key}"} if self.signing_key else {}
        res = httpx.get(f"{self.url}/v1/events/{event_id}/runs", headers=headers, timeout=10)
        res.raise_for_status()
        return list(res.json().get("data") or [])

    def wait_for_run(self, event_id: str, *, timeout_s: float = 30.0, count: int = 1) -> RunResult:
        """Wait until the event's run ended; returns its status and output."""
        return self.wait_for_runs(event_id, timeout_s=timeout_s, count=count)[0]

    def wait_for_runs(self, event_id: str, *, timeout_s: float = 30.0, count: int = 1) -> list[RunResult]:
        deadline = time.monotonic() + timeout_s
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs(event_id)
            if len(runs) >= count and all(r.get("status") in TERMINAL for r in runs):
                return [RunResult(r["run_id"], r["status"], r.get("output"), r) for r in runs]
            time.sleep(0.05)
        raise TimeoutError(f"runs of event {event_id} did not finish in {timeout_s}s: {runs}\n{self.log()}")


server = DevServer.from_env()
"""The default server, for ``pytest_configure`` / ``pytest_unconfigure`` hooks."""


@contextlib.contextmanager
def serve_app(app: Any, *, wsgi: bool = False, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app (FastAPI, Starlette, Django ASGI) or a WSGI app (Flask, Django) on a
    free local port in a background thread; yields the base URL."""
    port = port or free_port()
    if wsgi:
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class _Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        class _Threaded(WSGIServer):
            # one thread per request: the server calls back while a sync PUT is open
            def process_request(self, request: Any, client_address: Any) -> None:
                threading.Thread(
                    target=self._handle, args=(request, client_address), daemon=True
                ).start()

            def _handle(self, request: Any, client_address: Any) -> None:
                try:
                    self.finish_request(request, client_address)
                finally:
                    self.shutdown_request(request)

        httpd = make_server("127.0.0.1", port, app, server_class=_Threaded, handler_class=_Quiet)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            httpd.shutdown()
            httpd.server_close()
        return
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
