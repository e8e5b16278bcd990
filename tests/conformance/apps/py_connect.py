"""Conformance app: the official ``inngest`` PyPI SDK as a connect worker
(``inngest.connect.connect``): it dials out over a WebSocket instead of serving HTTP.

Run as a script like the other apps (see ``common.py``), plus:
- ``CONNECT_INSTANCE_ID``: the worker's instance id (several workers may share one app id);
- ``CONNECT_MAX_CONCURRENCY``: its ``max_worker_concurrency`` (unset: unlimited).

It serves the functions of ``functions_async.py`` and those of ``connect_functions.py``. The
SDK drains on SIGTERM: in-flight steps finish, no new ones come.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import connect_functions  # noqa: E402
import functions_async  # noqa: E402
import inngest  # noqa: E402
from frameworks import client  # noqa: E402
from inngest.connect import connect  # noqa: E402

KIND = "py_connect"


def main() -> None:
    c = client(inngest, KIND, sync=False)
    fns = functions_async.functions(inngest, c, KIND) + connect_functions.functions(inngest, c, KIND)
    limit = os.environ.get("CONNECT_MAX_CONCURRENCY")
    worker = connect(
        [(c, fns)],
        instance_id=os.environ.get("CONNECT_INSTANCE_ID") or f"{KIND}-{os.getpid()}",
        max_worker_concurrency=int(limit) if limit else None,
    )
    asyncio.run(worker.start())


if __name__ == "__main__":
    main()
