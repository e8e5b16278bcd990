"""An in-memory stand-in for the server: replays the function until it completes or fails."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from pyngest.protocol.opcodes import Opcode
from pyngest.sdk.execute import ExecRequest, execute_async, execute_sync
from pyngest.sdk.function import Function
from pyngest.sdk.replay import CallResult, error_data
from pyngest.sdk.types import Event

from .client import Inngest
from .consts import Status, Timeout
from .errors import UnstubbedStepError

DEFAULT_RETRIES = 4
MAX_REQUESTS = 10_000


@dataclass
class Result:
    error: Exception | None
    output: object
    status: Status


def _run(coro: Any) -> CallResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[no-any-return]
    # Called from inside a running loop (e.g. an async test): run on a helper thread.
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(coro)))
    thread.start()
    thread.join()
    return box[0]  # type: ignore[no-any-return]


def trigger(
    fn: Function[Any],
    event: Event | list[Event],
    client: Inngest,
    *,
    step_stubs: dict[str, object] | None = None,
) -> Result:
    """Run ``fn`` for ``event`` (or a batch) to completion, in process.

    Every step gets ``retries + 1`` attempts, as on a real server; a step whose attempts run
    out raises ``StepError`` in the handler, which may catch it.
    """
    events = event if isinstance(event, list) else [event]
    if not events:
        raise ValueError("mocked.trigger needs at least one event")
    stubs = dict(step_stubs or {})
    max_attempts = (fn._opts.retries if fn._opts.retries is not None else DEFAULT_RETRIES) + 1
    steps: dict[str, Any] = {}
    stack: list[str] = []
    planned: list[str] = []
    attempt = 0
    for _ in range(MAX_REQUESTS):
        target = planned[0] if planned else None
        req = ExecRequest(
            event=events[0],
            events=events,
            steps=steps,
            use_api=False,
            attempt=attempt,
            disable_immediate=True,  # plan every step first, so stubs replace steps before they run
            max_attempts=max_attempts,
            run_id="test",
            stack=list(stack),
        )
        # Each request replays from fresh copies, as a server sends fresh JSON each time.
        copies = [e.model_copy() for e in events]
        req.event = copies[0]
        if fn.is_handler_async:
            res = _run(execute_async(client, fn, fn.id, req, copies, dict(steps), target))
        else:
            res = execute_sync(client, fn, fn.id, req, copies, dict(steps), target)
        if res.multi is None:
            if res.error is None:
                return Result(error=None, output=res.output, status=Status.COMPLETED)
            if getattr(res.error, "is_retriable", True) is False or attempt + 1 >= max_attempts:
                return Result(error=res.error, output=None, status=Status.FAILED)
            attempt += 1
            continue
        retry = False
        for item in res.multi:
            info = item.step
            if info is None:
                continue
            if info.op is Opcode.STEP_ERROR:
                if getattr(item.error, "is_retriable", True) is False:
                    return Result(error=item.error, output=None, status=Status.FAILED)
                retry = True
                continue
            if info.display_name in stubs:
                stub = stubs[info.display_name]
                steps[info.id] = None if stub is Timeout else (stub.model_dump() if isinstance(stub, Event) else {"data": stub})
            elif info.op is Opcode.STEP_PLANNED:
                if info.id not in planned:
                    planned.append(info.id)
                continue
            elif info.op is Opcode.SLEEP:
                steps[info.id] = None  # time is skipped
            elif info.op is Opcode.STEP_RUN:
                steps[info.id] = {"data": item.output}
            elif info.op is Opcode.STEP_FAILED:
                steps[info.id] = {"error": error_data(item.error) if item.error else {"name": "Error", "message": ""}}
            else:
                raise UnstubbedStepError(info.display_name)
            stack.append(info.id)
            if info.id in planned:
                planned.remove(info.id)
        if retry:
            attempt += 1
            if attempt >= max_attempts:  # unreachable: the SDK reports StepFailed on the last one
                return Result(error=res.multi[0].error, output=None, status=Status.FAILED)
        else:
            attempt = 0
    raise RuntimeError(f"mocked.trigger: the function did not finish within {MAX_REQUESTS} requests")


