"""Staying awake for an SDK's next request, while few runs are executing (issue 16).

A checkpointing SDK sends its next checkpoint about 0.1 ms after we answer the last one. If the
event loop sleeps in between, the thread is descheduled and, on a virtual machine whose idle
CPUs halt (this project's 2-vCPU benchmark machine: ``cpuidle-haltpoll`` with
``guest_halt_poll_ns=0``), waking it again takes tens of microseconds of the hypervisor's and
the kernel's time, on the critical path of every step.

So after the server answers a checkpoint or an event on the short path (``api/lane.py``; an
event starts runs whose app is called next), :class:`KeepAwake` keeps the loop turning (a
callback that schedules itself: each turn polls for I/O without blocking) for ``window_s``, but
only while at most ``QUIET_RUNNING`` jobs are executing. Under load the loop has work anyway, and
a spinning thread takes CPU from the app when they share a machine: without that condition, 10-step
runs at 64 in flight were 5-16 % fewer per second in 4 of 5 alternations on that machine. With it,
the loop stays awake for 10 of 50,000 answers at 64 in flight.

Measured there side by side, in turns: a 10-step run one at a time, p50 5.11 ms asleep, 4.73 ms
with a 0.3 ms window, 4.49 ms with 0.5 ms (the default). The price: 12-19 % more server CPU per
run one at a time (polling in place of sleeping). ``window_s=0`` turns it off
(``pyngest dev/start --spin-us 0``); a machine whose idle CPUs poll gains nothing from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# jobs executing at most for the loop to stay awake: one run at a time, and its next job
QUIET_RUNNING = 2


class KeepAwake:
    def __init__(self, window_s: float, running: Callable[[], int],
                 now: Callable[[], float] = time.perf_counter) -> None:
        self.window_s = window_s
        self._running = running  # jobs executing now
        self._now = now
        self._until = 0.0
        self._spinning = False
        self.spins = 0  # times the loop stayed awake (for tests)

    def touch(self) -> None:
        """An SDK was just answered: stay awake for its next request, if few runs are executing."""
        if self.window_s <= 0 or self._running() > QUIET_RUNNING:
            return
        self._until = self._now() + self.window_s
        if not self._spinning:
            self._spinning = True
            self.spins += 1
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        if self._now() < self._until and self._running() <= QUIET_RUNNING:
            asyncio.get_running_loop().call_soon(self._turn)
        else:
            self._spinning = False

    @property
    def spinning(self) -> bool:
        return self._spinning
