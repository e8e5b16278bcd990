"""What the Python conformance apps share: configuration from the environment and the
observation log the tests read.

Every app (FastAPI, Flask, and the Node app in ``../js``) is configured the same way:

- ``PORT``: the port to listen on (127.0.0.1).
- ``CONFORMANCE_APP_ID``: the Inngest app id (default ``conformance-<kind>``).
- ``CONFORMANCE_PREFIX``: prefix of every event name the app's functions listen to, so that
  several apps synced to one server never trigger each other's functions.
- ``CONFORMANCE_LOG``: a JSON-lines file; the apps append one line per thing they observe
  (a step body running, a failure handler firing, the SDK fetching state through the API).
- the official SDK's own variables: ``INNGEST_DEV``, ``INNGEST_BASE_URL``,
  ``INNGEST_SIGNING_KEY``, ``INNGEST_EVENT_KEY``.

A log line is one ``write()`` on a file opened with ``O_APPEND``, so lines from concurrent
handlers never interleave and their order is the order in which they happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from typing import Any

# How many requests of `crash-mixed` may run at once (test_cluster_crash.py checks it held).
CRASH_MIXED_LIMIT = 3
# Runs of `torture-retry` started per second at most (test_torture.py).
TORTURE_THROTTLE = 20

def app_id(kind: str) -> str:
    return os.environ.get("CONFORMANCE_APP_ID") or f"conformance-{kind}"


def prefix(kind: str) -> str:
    return os.environ.get("CONFORMANCE_PREFIX") or kind


def port() -> int:
    return int(os.environ["PORT"])


_log_lock = threading.Lock()
_log_fd: int | None = None


def record(app: str, /, **fields: Any) -> None:
    """Append one observation to the log (a no-op when no log is configured)."""
    global _log_fd
    path = os.environ.get("CONFORMANCE_LOG")
    if not path:
        return
    line = json.dumps({"app": app, "t": time.time(), "pid": os.getpid(), **fields})
    with _log_lock:
        if _log_fd is None:
            _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(_log_fd, (line + "\n").encode())


_requests: dict[str, int] = {}


def request_count(run_id: str) -> int:
    """How many times this process has called a function's handler for ``run_id`` (this call
    included): one per request, for the functions that behave differently on later ones."""
    with _log_lock:
        _requests[run_id] = _requests.get(run_id, 0) + 1
        return _requests[run_id]


def nonce() -> str:
    return uuid.uuid4().hex


def blob(index: int, size: int) -> str:
    """A deterministic string of ``size`` characters, different for each ``index``."""
    seed = hashlib.sha256(f"blob-{index}".encode()).hexdigest()
    return (seed * (size // len(seed) + 1))[:size]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
