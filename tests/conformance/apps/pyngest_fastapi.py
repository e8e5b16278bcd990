"""Conformance app: pyngest's own SDK (``import pyngest as inngest``, async handlers) served by
FastAPI through ``pyngest.fast_api``: ``py_fastapi.py`` with only the SDK swapped.

Run as a script: ``PORT=... CONFORMANCE_LOG=... python pyngest_fastapi.py``; see ``common.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from frameworks import fastapi_app, run_asgi  # noqa: E402

import pyngest as inngest  # noqa: E402
import pyngest.fast_api  # noqa: E402

app = fastapi_app(inngest, "pyngest_fastapi")

if __name__ == "__main__":
    run_asgi(app)
