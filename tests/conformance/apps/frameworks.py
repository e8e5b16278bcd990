"""The web-framework side of the Python conformance apps, shared by the official SDK's apps
and pyngest's: each builds the same app around whichever SDK module it is given (the PyPI
``inngest`` package or ``pyngest``), so that the two differ in nothing but the SDK.

The caller imports the SDK's framework adapter (``inngest.fast_api``, ``pyngest.flask``, ...)
before calling, as a user's app would.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

import functions_async
import functions_sync
from common import app_id, port


def client(inngest: ModuleType, kind: str, *, sync: bool) -> Any:
    """The SDK's client for app ``kind``, with its state fetches observed."""
    c = inngest.Inngest(app_id=app_id(kind), logger=logging.getLogger("conformance"))
    (functions_sync if sync else functions_async).observe_state_fetches(c, kind)
    return c


def fastapi_app(inngest: ModuleType, kind: str) -> Any:
    """A FastAPI app serving the async functions through ``inngest.fast_api``."""
    import fastapi

    c = client(inngest, kind, sync=False)
    app = fastapi.FastAPI()
    fns = functions_async.functions(inngest, c, kind)
    if os.environ.get("CONFORMANCE_CONNECT_FUNCTIONS"):
        # the connect tests' functions too: an HTTP app that invokes a connect app's function
        import connect_functions

        fns += connect_functions.functions(inngest, c, kind)
    inngest.fast_api.serve(app, c, fns)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "app_id": c.app_id}

    return app


def flask_app(inngest: ModuleType, kind: str) -> Any:
    """A Flask app serving the sync functions through ``inngest.flask``."""
    import flask

    c = client(inngest, kind, sync=True)
    app = flask.Flask(kind)
    inngest.flask.serve(app, c, functions_sync.functions(inngest, c, kind))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "app_id": c.app_id}

    return app


def run_asgi(app: Any) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port(), log_level="warning")


def run_flask(app: Any) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host="127.0.0.1", port=port(), threaded=True)
