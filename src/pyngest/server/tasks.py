"""Stopping background tasks without hanging the server's shutdown.

``task.cancel(); await task`` waits forever if the task never sees its cancellation: Python
3.11's ``asyncio.wait_for`` can swallow a cancel that arrives as its inner wait completes, and a
loop written as ``while True`` then carries on. Shutdown must end whatever a task does, so a task
is cancelled again until it ends, and one that still runs after ``patience_s`` is logged and left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("pyngest.server")

_RECANCEL_S = 0.2


async def stop_tasks(tasks: Iterable[asyncio.Task[object] | None], patience_s: float = 10.0) -> None:
    """Cancel ``tasks`` and wait for them to end (re-cancelling), at most ``patience_s``."""
    pending = {t for t in tasks if t is not None and not t.done()}
    if not pending:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            for task in pending:
                log.warning("task %s did not stop within %.0f s; left running", task.get_name(), patience_s)
            return
        done, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_S, left))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("task %s ended with %r while stopping", task.get_name(), task.exception())
