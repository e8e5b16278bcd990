"""An app behind an HTTP/1.0 proxy, with the official Python SDK streaming its answers.

``INNGEST_STREAMING=force`` makes the SDK answer every execution request with a ``201`` whose
body is keep-alive whitespace and then the real answer as a JSON envelope. Through the proxy
(``http10_proxy.py``) that arrives as an HTTP/1.0 response carrying the app's
``Transfer-Encoding: chunked`` header over a plain body that ends when the connection closes.
The server must read it to the close and run the function as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Api, App, Server, new_tag
from .http10_proxy import HTTP10Proxy

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def proxied_app(server: Server, workdir: Path) -> Iterator[tuple[App, HTTP10Proxy]]:
    app = App("py_fastapi", workdir, server.url, env={"INNGEST_STREAMING": "force"})
    proxy = HTTP10Proxy(app.base).start()
    # the SDK tells the server to call it through the proxy
    app.env["INNGEST_SERVE_ORIGIN"] = proxy.url
    app.start()
    try:
        assert app.sync_error() is None
        yield app, proxy
    finally:
        app.stop()
        proxy.stop()


def test_streamed_answers_through_an_http10_proxy(
    proxied_app: tuple[App, HTTP10Proxy], api: Api
) -> None:
    app, proxy = proxied_app
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": new_tag()}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"values": [1, 2, 3]}
    streamed = [h for status, h in proxy.responses if status == 201]
    assert streamed, "the SDK streamed its answers"
    assert all(h.get("transfer-encoding") == "chunked" for h in streamed), streamed
