"""Conformance app: the official ``inngest`` PyPI SDK (sync handlers) served by Flask.

The functions are those of ``functions_sync.py``, written against the SDK's synchronous API, so
that the SDK's sync code path is driven too. Run as a script:
``PORT=... CONFORMANCE_LOG=... python py_flask.py``; see ``common.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import inngest  # noqa: E402
import inngest.flask  # noqa: E402
from frameworks import flask_app, run_flask  # noqa: E402

app = flask_app(inngest, "py_flask")

if __name__ == "__main__":
    run_flask(app)
