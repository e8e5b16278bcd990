"""Recording that a run started, in the commit of its first result.

A run's start (status Running, ``started_ms``, the FunctionStarted history row, the finish
timeout) used to be a commit of its own, submitted as its first request left. It is now held
back and joins the first commit about the run that follows — the first request's answer, a
checkpoint, or the run's end — which saves a write per run. A request still out after
``GRACE_S`` commits it alone, so a run in a long first step shows as Running within that time.
A crash before either commit only leaves the run looking queued, as before: its request job is
still stored and runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pyngest.protocol.durations import parse_ms
from pyngest.server.executor.state import State
from pyngest.server.model import (
    AddHistory,
    Batch,
    CommitResult,
    Enqueue,
    Job,
    JobKind,
    Op,
    Run,
    RunStatus,
    UpdateRun,
)
from pyngest.server.registry import Function

log = logging.getLogger("pyngest.executor")

GRACE_S = 0.2


class StartRecords:
    def __init__(self, state: State, now_ms: Callable[[], int]) -> None:
        self.state = state
        self.now_ms = now_ms
        self._held: dict[str, list[Op]] = {}  # run id -> the ops recording its start
        self._landing: set[asyncio.Future[CommitResult]] = set()

    def begin(self, run: Run, fn: Function) -> None:
        """``run``'s first request is about to leave: it is running (in memory now, in the store
        with its next commit)."""
        now = self.now_ms()
        run.status = RunStatus.RUNNING
        run.started_ms = now
        ops: list[Op] = [
            UpdateRun(run.id, {"status": RunStatus.RUNNING, "started_ms": now}),
            AddHistory(run.id, now, "FunctionStarted"),
        ]
        finish = (fn.config.get("timeouts") or {}).get("finish")
        if finish:
            ops.append(Enqueue(Job(id=f"{run.id}:timeout-finish", kind=JobKind.TIMEOUT_FINISH,
                                   due_ms=now + parse_ms(finish), run_id=run.id)))
        self._held[run.id] = ops
        asyncio.get_running_loop().call_later(GRACE_S, self.flush, run.id)

    def take(self, run_id: str, batch: Batch) -> None:
        """Put ``run_id``'s held start, if any, at the head of ``batch`` (a commit about the run):
        whatever the batch then changes about the run comes after it."""
        ops = self._held.pop(run_id, None)
        if ops:
            batch.ops[0:0] = ops

    def flush(self, run_id: str) -> None:
        """Commit ``run_id``'s held start on its own (its request is taking long, or was cut short)."""
        ops = self._held.pop(run_id, None)
        if not ops:
            return
        run = self.state.runs.peek(run_id)
        if run is not None and run.ended:
            return  # ended meanwhile by a commit that did not carry it
        fut = asyncio.ensure_future(self.state.submit(Batch(ops)))
        self._landing.add(fut)
        fut.add_done_callback(self._landed)

    def _landed(self, fut: asyncio.Future[CommitResult]) -> None:
        self._landing.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("recording a run's start failed (it shows as queued until its next commit): %s",
                        fut.exception())
