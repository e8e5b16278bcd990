"""The floor: what one step costs at the least over HTTP — a round trip plus one SQLite commit.

A "run" of k steps is k such round trips back to back; there is no orchestration at all, so
every real system's figures can be read as a multiple of this.
"""

from __future__ import annotations

import os

import aiohttp

from bench.harness.procs import ROOT, Proc, free_port, python, wait_http
from bench.harness.systems.base import Kind, System

STEPS = {"one": 1, "ten": 10}


class Floor(System):
    name, label = "floor", "floor (HTTP + 1 SQLite commit per step)"

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.port = free_port()
        path = os.path.join(self.data_dir("floor"), "floor.db")
        app = Proc("floor", python("-m", "bench.harness.apps.floor_app", str(self.port), path), cwd=ROOT)
        self.processes.append(app)
        await wait_http(f"http://127.0.0.1:{self.port}/", app)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def run(self, kind: Kind, i: int) -> None:
        assert self.http is not None
        url = f"http://127.0.0.1:{self.port}/step"
        for n in range(STEPS[kind]):
            async with self.http.post(url, data=b'{"run":%d,"step":%d}' % (i, n)) as r:
                await r.read()

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        await super().stop()

    def describe(self) -> dict[str, str]:
        return {"store": "SQLite WAL, synchronous=NORMAL, one commit per step"}
