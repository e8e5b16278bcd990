"""Fixtures of the conformance suite: one real ``pyngest dev`` server per test module, and the
SDK apps synced to it, started on first use and shared by the module's tests.

``app`` is parametrized over the seven apps (``harness.APP_KINDS``: the official SDKs'
``py_fastapi``, ``py_flask``, ``js``, and pyngest's ``pyngest_fastapi``, ``pyngest_flask``,
``pyngest_django`` with checkpointing, ``pyngest_fastapi_classic`` without); a test that applies to fewer SDKs narrows it with ``@pytest.mark.parametrize("app", [...], indirect=True)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import APP_KINDS, Api, App, Server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    with Server.running(workdir / "server") as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return server.api()


class AppPool:
    """Apps of one module, started and synced on first use."""

    def __init__(self, server: Server, workdir: Path):
        self.server = server
        self.workdir = workdir
        self.apps: dict[str, App] = {}

    def get(self, kind: str) -> App:
        if kind not in self.apps:
            app = App(kind, self.workdir, self.server.url)
            self.apps[kind] = app
            app.start()
            error = app.sync_error()
            assert error is None, (
                f"syncing {kind} failed: {error}\n"
                f"server log:\n{self.server.proc.tail() if self.server.proc else ''}"
            )
        return self.apps[kind]

    def stop(self) -> None:
        for app in self.apps.values():
            app.stop()


@pytest.fixture(scope="module")
def apps(server: Server, workdir: Path) -> Iterator[AppPool]:
    pool = AppPool(server, workdir)
    yield pool
    pool.stop()


@pytest.fixture(scope="module", params=APP_KINDS)
def app(request: pytest.FixtureRequest, apps: AppPool) -> App:
    return apps.get(request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a case fails, show the end of the server's and the apps' output with it."""
    yield
    if not request.node.stash.get(_CALL_FAILED, False):
        return
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        if srv.proc is not None:
            print(f"----- server output ({srv.proc.out}):\n{srv.proc.tail(60)}")
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        if app.proc is not None:
            print(f"----- {app.kind} app output ({app.proc.out}):\n{app.proc.tail(30)}")
