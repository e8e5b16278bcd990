"""Fixtures of the SDK integration tests.

- ``pyngest_server``: as the documented pytest plugin's (``pyngest dev`` on SQLite, once a
  session), one per checkpointing mode, so the two runs of a test never see each other's events.
- ``store_server``: a ``pyngest dev`` on the store the suite runs on (``PYNGEST_TEST_BACKEND``),
  once a module.
- ``checkpointing`` (autouse): every test of this directory runs twice, with the SDK's
  checkpointing on (its default) and off (``INNGEST_CHECKPOINTING=0``, read by clients made
  without a ``checkpointing=`` option), so each behaviour is checked both ways; a module that
  compares against the official SDK request by request pins it (``CHECKPOINTING_MODES``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pyngest.experimental.dev_server import DevServer
from pyngest.experimental.pytest_plugin import pyngest_client  # noqa: F401
from tests import backends

MODES = ("on", "off")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "checkpointing" in metafunc.fixturenames:
        metafunc.parametrize("checkpointing", getattr(metafunc.module, "CHECKPOINTING_MODES", MODES), indirect=True)


@pytest.fixture(autouse=True)
def checkpointing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    mode = getattr(request, "param", "on")
    if mode == "off":
        monkeypatch.setenv("INNGEST_CHECKPOINTING", "0")
    else:
        monkeypatch.delenv("INNGEST_CHECKPOINTING", raising=False)
    return str(mode)


@pytest.fixture(scope="session")
def _servers_by_mode() -> Iterator[dict[str, DevServer]]:
    servers: dict[str, DevServer] = {}
    try:
        yield servers
    finally:
        for srv in servers.values():
            srv.stop()


@pytest.fixture
def pyngest_server(checkpointing: str, _servers_by_mode: dict[str, DevServer]) -> DevServer:
    srv = _servers_by_mode.get(checkpointing)
    if srv is None:
        srv = _servers_by_mode[checkpointing] = DevServer()
        srv.start()
    return srv


@pytest.fixture(scope="module")
def store_server() -> Iterator[DevServer]:
    extra: tuple[str, ...] = ()
    if backends.BACKEND == "postgres":
        schema = backends.schema_for(f"sdk-{uuid.uuid4().hex}")
        backends.create_schema_sync(schema)
        extra = ("--postgres-uri", backends.postgres_uri(schema), "--redis-uri", backends.REDIS_URI)
    srv = DevServer(extra_args=extra)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()

