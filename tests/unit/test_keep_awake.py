"""KeepAwake: the loop keeps turning for a window after an answer, only while few runs execute."""

from __future__ import annotations

import asyncio

from pyngest.server.awake import QUIET_RUNNING, KeepAwake


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _turns_until_asleep(awake: KeepAwake, clock: _Clock, step_s: float, limit: int = 1000) -> int:
    """Loop turns the loop makes while ``awake`` spins, the clock moving ``step_s`` per turn."""
    turns = 0
    while awake.spinning and turns < limit:
        await asyncio.sleep(0)  # one turn of the loop
        clock.t += step_s
        turns += 1
    return turns


async def test_the_loop_stays_awake_for_the_window_then_sleeps() -> None:
    clock = _Clock()
    awake = KeepAwake(0.000_3, lambda: 1, now=clock)
    awake.touch()
    assert awake.spinning and awake.spins == 1
    turns = await _turns_until_asleep(awake, clock, 0.000_01)
    assert 25 <= turns <= 35  # 300 µs at 10 µs a turn
    assert not awake.spinning


async def test_another_answer_while_awake_extends_the_window_without_a_second_spinner() -> None:
    clock = _Clock()
    awake = KeepAwake(0.000_3, lambda: 1, now=clock)
    awake.touch()
    clock.t = 0.000_2
    awake.touch()  # 200 µs later: awake until 500 µs
    assert awake.spins == 1
    turns = await _turns_until_asleep(awake, clock, 0.000_01)
    assert 25 <= turns <= 35
    assert clock.t >= 0.000_5


async def test_it_does_not_spin_while_many_runs_execute_or_when_off() -> None:
    clock = _Clock()
    running = [QUIET_RUNNING + 1]
    busy = KeepAwake(0.000_3, lambda: running[0], now=clock)
    busy.touch()
    assert not busy.spinning and busy.spins == 0

    off = KeepAwake(0, lambda: 1, now=clock)
    off.touch()
    assert not off.spinning and off.spins == 0

    # runs start while it spins: it stops at the next turn
    running[0] = 1
    busy.touch()
    assert busy.spinning
    running[0] = QUIET_RUNNING + 1
    assert await _turns_until_asleep(busy, clock, 0.0) <= 2


async def test_a_real_loop_goes_on_serving_other_work_while_awake() -> None:
    awake = KeepAwake(0.05, lambda: 0)
    awake.touch()
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.01, done.set_result, "served")
    assert await asyncio.wait_for(done, 5) == "served"
    while awake.spinning:
        await asyncio.sleep(0.01)
    assert awake.spins == 1
