"""Conformance app: pyngest's own SDK (``import pyngest as inngest``, sync handlers) served by
Flask through ``pyngest.flask``: ``py_flask.py`` with only the SDK swapped.

Run as a script: ``PORT=... CONFORMANCE_LOG=... python pyngest_flask.py``; see ``common.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from frameworks import flask_app, run_flask  # noqa: E402

import pyngest as inngest  # noqa: E402
import pyngest.flask  # noqa: E402

app = flask_app(inngest, "pyngest_flask")

if __name__ == "__main__":
    run_flask(app)
