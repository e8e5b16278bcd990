"""Replaying N memoized steps does O(1) work per step: no pass over the remaining memos.

(The official SDK rebuilds its memo dict on every step, O(N) each, so O(N²) per request.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyngest as inngest
from pyngest.protocol.step_ids import hash_step_id
from pyngest.sdk.execute import ReplayLogger
from pyngest.sdk.function import Context
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import MiddlewareManager
from pyngest.sdk.replay import Execution, run_async
from pyngest.sdk.steps import Step


class CountingDict(dict[str, Any]):
    """Counts every operation that walks or copies the whole dict."""

    walks = 0

    def __iter__(self) -> Any:
        CountingDict.walks += 1
        return super().__iter__()

    def keys(self) -> Any:
        CountingDict.walks += 1
        return super().keys()

    def values(self) -> Any:
        CountingDict.walks += 1
        return super().values()

    def items(self) -> Any:
        CountingDict.walks += 1
        return super().items()

    def copy(self) -> Any:
        CountingDict.walks += 1
        return super().copy()


def test_replay_never_walks_the_memos() -> None:
    n = 2000
    client = inngest.Inngest(app_id="lin", is_production=False)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"))
    async def f(ctx: inngest.Context) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step.run("s", lambda i=i: i)
        return total

    raw = CountingDict({hash_step_id("s", i): {"data": i} for i in range(n)})
    CountingDict.walks = 0
    exe = Execution(
        memos=StepMemos(raw), middleware=MiddlewareManager(client, None), target=None,
        disable_immediate=False, attempt=0, max_attempts=5, logger=client.logger,
    )
    step = Step(client, exe)
    ev = inngest.Event(name="e")
    ctx = Context(attempt=0, event=ev, events=[ev], group=step._group, job_id=None,
                  logger=ReplayLogger(client.logger, exe), request_id=None, run_id="r", step=step)
    res = asyncio.run(run_async(exe, client, f, ctx, f._handler, False, f.output_type))
    assert res.output == n * (n - 1) // 2
    assert len(raw) == 0  # every memo consumed
    assert CountingDict.walks == 0
