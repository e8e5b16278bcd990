"""Conformance app: the official ``inngest`` PyPI SDK (async handlers) served by FastAPI.

Run as a script: ``PORT=... CONFORMANCE_LOG=... python py_fastapi.py``. See ``common.py`` for
the configuration, ``functions_async.py`` for the functions and ``frameworks.py`` for the app
around them; ``py_flask.py`` (sync handlers), ``../js/app.mjs`` (the npm SDK) and the
``pyngest_*.py`` apps define the same ids, and the tests in ``tests/conformance`` drive them all.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inngest  # noqa: E402
import inngest.fast_api  # noqa: E402
from frameworks import fastapi_app, run_asgi  # noqa: E402

app = fastapi_app(inngest, "py_fastapi")

if __name__ == "__main__":
    run_asgi(app)
