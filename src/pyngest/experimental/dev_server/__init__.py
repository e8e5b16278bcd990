"""Start and stop a real pyngest dev server for integration tests (no npm needed).

As in the official SDK's ``inngest.experimental.dev_server``::

    from pyngest.experimental import dev_server

    def pytest_configure(config):
        dev_server.server.start()

    def pytest_unconfigure(config):
        dev_server.server.stop()

or use the pytest fixtures in ``pyngest.experimental.pytest_plugin``. ``serve_app`` runs your
ASGI or WSGI app on a free local port so the server can call it.
"""

from .server import DevServer, RunResult, serve_app, server

__all__ = ["DevServer", "RunResult", "serve_app", "server"]
