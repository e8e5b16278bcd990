"""pyngest's server with three kinds of app: scripted (no SDK), pyngest's SDK, the official SDK.

The server runs as ``pyngest dev`` on its defaults (SQLite in WAL mode, synchronous=NORMAL:
a killed process loses nothing acknowledged) in a fresh directory. Runs are triggered with
``POST /e/{key}`` and awaited through the app's completion notice.
"""

from __future__ import annotations

import asyncio
from importlib import metadata

import aiohttp
import orjson

from bench.harness.notify import ENV as NOTIFY_ENV
from bench.harness.notify import Completions
from bench.harness.procs import ROOT, Proc, free_port, python, wait_http
from bench.harness.systems.base import Kind, System


class PyngestSystem(System):
    app_kind = ""
    durability = "normal"  # pyngest's default; "full" adds an fsync per commit (power-loss safe)
    app_env: dict[str, str] = {}  # more environment for the app's process

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.app_port = 0
        self.completions = Completions()
        self.http: aiohttp.ClientSession | None = None
        self.sqlite_dir = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}/api/inngest"

    def engine_names(self) -> set[str]:
        return {"pyngest"}

    async def start(self) -> None:
        await self.completions.start()
        self.port, self.app_port = free_port(), free_port()
        self.sqlite_dir = self.data_dir("sqlite")
        server = Proc("pyngest", python("-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll",
                                        "-p", str(self.port), "--host", "127.0.0.1",
                                        "--sqlite-dir", self.sqlite_dir, "--durability", self.durability,
                                        "-l", "warn"), cwd=ROOT)
        self.processes.append(server)
        app = Proc(f"app-{self.app_kind}", self.app_argv(), cwd=ROOT, env={
            NOTIFY_ENV: self.completions.address,
            "INNGEST_DEV": self.base, "INNGEST_BASE_URL": self.base, **self.app_env,
        })
        self.processes.append(app)
        await wait_http(self.base + "/health", server)
        await wait_http(f"http://127.0.0.1:{self.app_port}/healthz", app)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        await self.sync()

    def app_argv(self) -> list[str]:
        raise NotImplementedError

    async def sync(self) -> None:
        assert self.http is not None
        async with self.http.put(self.app_url) as r:
            body = await r.text()
            if r.status != 200:
                raise RuntimeError(f"sync of {self.app_url} failed: {r.status} {body}")
        await self.wait_functions(2)

    async def wait_functions(self, n: int) -> None:
        assert self.http is not None
        for _ in range(200):
            async with self.http.get(self.base + "/v1/functions") as r:
                data = orjson.loads(await r.read())
            items = data.get("data", data) if isinstance(data, dict) else data
            if len(items) >= n:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"the app's functions never appeared: {data}")

    def event_base(self) -> str:
        """Where run ``i``'s event is posted (a scale-out system spreads them)."""
        return self.base

    async def run(self, kind: Kind, i: int) -> None:
        assert self.http is not None
        done = self.completions.expect(str(i))
        try:
            body = orjson.dumps({"name": f"bench/{kind}", "data": {"i": i}})
            async with self.http.post(self.event_base() + "/e/bench", data=body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"POST /e answered {r.status}")
            await done
        finally:
            self.completions.forget(str(i))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        self.completions.close()
        await super().stop()

    def describe(self) -> dict[str, str]:
        sync = "FULL (fsync per commit)" if self.durability == "full" else "NORMAL (no fsync per commit)"
        return {"pyngest": metadata.version("pyngest"), "store": f"SQLite WAL, synchronous={sync}"}


class PyngestRaw(PyngestSystem):
    """The server with a scripted app: the server's own cost per step."""

    name, label, app_kind = "pyngest-raw", "pyngest (scripted app)", "raw"

    def app_argv(self) -> list[str]:
        return python("-m", "bench.harness.apps.raw_app", str(self.app_port))

    async def sync(self) -> None:
        from bench.harness.apps.raw_app import register_payload

        assert self.http is not None
        async with self.http.post(self.base + "/fn/register", data=register_payload(self.app_url)) as r:
            if r.status != 200:
                raise RuntimeError(f"register failed: {r.status} {await r.text()}")
        await self.wait_functions(2)

    async def step_gaps_us(self, clear: bool = False) -> list[int]:
        """Per-step overhead samples the app recorded (see raw_app)."""
        assert self.http is not None
        url = f"http://127.0.0.1:{self.app_port}/stats"
        async with self.http.get(url) as r:
            gaps = list(orjson.loads(await r.read())["gaps_us"])
        if clear:
            async with self.http.delete(url) as r:
                await r.read()
        return gaps


class PyngestSDK(PyngestSystem):
    """The server with an app on pyngest's SDK (FastAPI on uvicorn)."""

    name, label, app_kind = "pyngest-sdk", "pyngest + pyngest SDK", "pyngest"

    def app_argv(self) -> list[str]:
        return python("-m", "bench.harness.apps.inngest_app", self.app_kind, str(self.app_port))


class PyngestSDKClassic(PyngestSDK):
    """As :class:`PyngestSDK` with checkpointing off: a request per step, as the official SDK."""

    name, label = "pyngest-sdk-classic", "pyngest + pyngest SDK, checkpointing off"
    app_env = {"INNGEST_CHECKPOINTING": "0"}


class PyngestOfficialSDK(PyngestSDK):
    """The server with the same app on the official ``inngest`` SDK from PyPI."""

    name, label, app_kind = "pyngest-inngest-sdk", "pyngest + official inngest SDK", "inngest"

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "inngest": metadata.version("inngest")}


class PyngestSDKFsync(PyngestSDK):
    """As :class:`PyngestSDK` with ``--durability full``: every commit is fsynced, as the peers'
    defaults do (Restate's log, Postgres with synchronous_commit=on)."""

    name, label, durability = "pyngest-sdk-fsync", "pyngest + pyngest SDK, --durability full", "full"
