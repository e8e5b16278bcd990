"""Conformance app: the official ``inngest`` PyPI SDK as a connect worker
(``inngest.connect.connect``): it dials out over a WebSocket instead of serving HTTP.
``pyngest_connect.py`` is the same worker on pyngest's SDK (``pyngest.connect.connect``).

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

from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import connect_functions  # noqa: E402
import functions_async  # noqa: E402
from frameworks import client  # noqa: E402


def main(inngest: ModuleType, connect: Any, kind: str) -> None:
    c = client(inngest, kind, sync=False)
    fns = functions_async.functions(inngest, c, kind) + connect_functions.functions(inngest, c, kind)
    limit = os.environ.get("CONNECT_MAX_CONCURRENCY")
    worker = connect(
        [(c, fns)],
        instance_id=os.environ.get("CONNECT_INSTANCE_ID") or f"{kind}-{os.getpid()}",
        max_worker_concurrency=int(limit) if limit else None,
    )
    asyncio.run(worker.start())


if __name__ == "__main__":
    import inngest
    from inngest.connect import connect

    main(inngest, connect, "py_connect")
