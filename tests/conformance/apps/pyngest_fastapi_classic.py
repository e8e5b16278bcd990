"""Conformance app: ``pyngest_fastapi.py`` with the SDK's checkpointing off
(``INNGEST_CHECKPOINTING=0``): every step answered in a request of its own, as the official
SDK does. The other pyngest apps run with checkpointing on (the SDK's default), so each
behaviour is checked both ways.

Run as a script: ``PORT=... CONFORMANCE_LOG=... python pyngest_fastapi_classic.py``; see ``common.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["INNGEST_CHECKPOINTING"] = "0"

from frameworks import fastapi_app, run_asgi  # noqa: E402

import pyngest as inngest  # noqa: E402
import pyngest.fast_api  # noqa: E402

app = fastapi_app(inngest, "pyngest_fastapi_classic")

if __name__ == "__main__":
    run_asgi(app)
