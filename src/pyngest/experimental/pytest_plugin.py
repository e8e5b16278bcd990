"""pytest fixtures for integration tests against a real pyngest server.

Enable with ``pytest_plugins = ["pyngest.experimental.pytest_plugin"]`` in ``conftest.py``:

- ``pyngest_server``: a ``DevServer`` started once per session (``.url``, ``.sync()``,
  ``.wait_for_run()``);
- ``pyngest_client``: an ``Inngest`` client in dev mode pointed at that server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyngest.experimental.dev_server import DevServer
from pyngest.sdk.client import Inngest


@pytest.fixture(scope="session")
def pyngest_server() -> Iterator[DevServer]:
    srv = DevServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def pyngest_client(pyngest_server: DevServer) -> Inngest:
    return Inngest(
        app_id="test-app",
        is_production=False,
        api_base_url=pyngest_server.url,
        event_api_base_url=pyngest_server.url,
    )
