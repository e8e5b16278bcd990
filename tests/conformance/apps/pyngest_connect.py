"""Conformance app: pyngest's own SDK as a connect worker (``pyngest.connect.connect``):
``py_connect.py`` with only the SDK swapped."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from py_connect import main  # noqa: E402

import pyngest  # noqa: E402
from pyngest.connect import connect  # noqa: E402

if __name__ == "__main__":
    main(pyngest, connect, "pyngest_connect")
