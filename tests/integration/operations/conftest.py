"""One real ``pyngest dev`` process per module and the two SDK apps (``ops_app.py`` with
``OPS_SDK=pyngest`` and with ``OPS_SDK=official``), each a uvicorn process synced over HTTP.

The process plumbing (a server with its own SQLite folder, app processes, polling) is the
conformance suite's; only the app differs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conformance import conftest as conformance
from tests.conformance.harness import START_TIMEOUT, Api, App, Proc, Server, _child_env, poll

SDKS = ("pyngest", "official")
APP_SCRIPT = Path(__file__).with_name("ops_app.py")


@dataclass
class OpsApp(App):
    """``ops_app.py`` as a process; ``kind`` is the SDK."""

    @property
    def flags(self) -> Path:
        return self.workdir / f"{self.kind}-flags"

    def set_flag(self, name: str, on: bool) -> None:
        if on:
            (self.flags / name).touch()
        else:
            (self.flags / name).unlink(missing_ok=True)

    def launch(self) -> None:
        self.flags.mkdir(exist_ok=True)
        env = {
            "OPS_SDK": self.kind,
            "OPS_FLAGS": str(self.flags),
            "PORT": str(self.port),
            "CONFORMANCE_LOG": str(self.log_path),
            "CONFORMANCE_PREFIX": self.prefix,
            "CONFORMANCE_APP_ID": self.id,
            "INNGEST_DEV": self.server_url,
            "INNGEST_BASE_URL": self.server_url,
        }
        self.proc = Proc(f"ops app ({self.kind})", [sys.executable, str(APP_SCRIPT)], _child_env(env),
                         self.workdir, self.workdir / f"{self.kind}-{self.port}.out")
        self.proc.start()

    def start(self) -> None:
        self.launch()
        self.wait_serving()

    def wait_serving(self) -> None:
        poll(self._answers, timeout=START_TIMEOUT, interval=0.1, what=f"the {self.kind} app to serve")


class Ops:
    """The server's REST API for runs and operations, and what only its database shows."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.api: Api = server.api()
        self.url = server.url

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(self.url + path, json=body or {}, timeout=10)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.url + path, timeout=10)

    def get(self, path: str, **params: str) -> Any:
        res = requests.get(self.url + path, params=params, timeout=10)
        assert res.status_code == 200, f"GET {path}: {res.status_code} {res.text}"
        return res.json()["data"]

    def run_of(self, event_id: str) -> dict[str, Any]:
        """The one run an event started (waits for it to exist)."""
        [run] = self.api.wait_runs(event_id)
        return run

    def status(self, run_id: str) -> str:
        return str(self.api.run(run_id)["status"])

    def wait_status(self, run_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        return poll(lambda: (run := self.api.run(run_id))["status"] == status and run, timeout=timeout,
                    what=f"run {run_id} to be {status}")

    def wait_operation(self, kind: str, op_id: str, timeout: float = 20) -> dict[str, Any]:
        """A cancellation or replay, once it has completed."""
        return poll(lambda: (op := self.get(f"/v1/{kind}/{op_id}"))["status"] == "completed" and op,
                    timeout=timeout, what=f"{kind} {op_id} to complete")

    def skips(self, event_id: str) -> list[tuple[str, str]]:
        """(function id, reason) for each function the event did not start, through the REST API."""
        resp = self.api.session.get(f"{self.api.url}/v1/events/{event_id}/skips", timeout=30)
        resp.raise_for_status()
        return [(s["function_id"], s["reason"]) for s in resp.json()["data"]]


# the conformance suite's: a module's own folder, and its `pyngest dev` with a SQLite folder in it
workdir = conformance.workdir
server = conformance.server


@pytest.fixture(scope="module")
def ops(server: Server) -> Ops:
    return Ops(server)


@pytest.fixture(scope="module")
def apps(server: Server, workdir: Path) -> Iterator[dict[str, OpsApp]]:
    """Both apps, started together (they take a second or two to import) and synced."""
    started = {sdk: OpsApp(sdk, workdir, server.url, app_id=f"ops-{sdk}") for sdk in SDKS}
    try:
        for app in started.values():
            app.launch()
        for app in started.values():
            app.wait_serving()
            error = app.sync_error()
            assert error is None, f"{error}\nserver log:\n{server.proc.tail() if server.proc else ''}"
        yield started
    finally:
        for app in started.values():
            app.stop()


@pytest.fixture(params=SDKS)
def app(request: pytest.FixtureRequest, apps: dict[str, OpsApp]) -> OpsApp:
    return apps[request.param]
