"""The run cache stays within its bounds and never evicts a run in use."""

from __future__ import annotations

import asyncio

from pyngest.server.executor.state import RunCache
from pyngest.server.model import Run, RunStatus


class NoStore:
    async def load_run(self, run_id: str) -> Run | None:
        return None


def run(run_id: str, size: int) -> Run:
    return Run(id=run_id, fn_id="f", app_id="a", status=RunStatus.RUNNING, event_ids=[], events=[],
               queued_ms=0, state_bytes=size)


async def test_bounded_by_bytes_and_count_and_accounts_growth() -> None:
    cache = RunCache(NoStore(), capacity=3, max_bytes=1000)  # type: ignore[arg-type]
    for i in range(3):
        cache.put(run(f"r{i}", 300))
    assert len(cache) == 3 and cache.bytes == 900
    cache.put(run("r3", 300))  # over both bounds: the oldest goes
    assert await cache.get("r0") is None and cache.bytes == 900
    r3 = await cache.get("r3")
    assert r3 is not None
    r3.state_bytes += 500
    cache.grew(r3, 500)
    assert cache.bytes <= 1000 and await cache.get("r3") is r3


async def test_runs_in_use_are_not_evicted() -> None:
    cache = RunCache(NoStore(), capacity=1, max_bytes=10**9)  # type: ignore[arg-type]
    held = run("held", 1)
    cache.put(held)
    async with cache.lock("held"):
        cache.put(run("other", 1))
        assert await cache.get("held") is held
    cache.put(run("third", 1))
    assert await cache.get("held") is None


async def test_an_ended_run_leaves_when_its_lock_is_last_released() -> None:
    cache = RunCache(NoStore(), capacity=10, max_bytes=10**9)  # type: ignore[arg-type]
    live, ending = run("live", 5), run("ending", 7)
    cache.put(live)
    cache.put(ending)
    waiter_saw: list[Run | None] = []

    async def second_user() -> None:
        async with cache.lock("ending"):
            waiter_saw.append(cache.peek("ending"))

    async with cache.lock("ending"):
        task = asyncio.create_task(second_user())
        await asyncio.sleep(0)  # the second user now waits for the lock
        ending.status = RunStatus.COMPLETED
    await task
    assert waiter_saw == [ending]  # not dropped while someone still waited for it
    assert cache.peek("ending") is None and cache.bytes == 5
    async with cache.lock("live"):
        pass
    assert cache.peek("live") is live
