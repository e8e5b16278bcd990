"""Restate: its server (the npm package ``@restatedev/restate-server``) and a Python service.

The server runs as a single node with all its roles on its own defaults (the local log
server fsyncs its RocksDB WAL before an append is acknowledged, so every journal entry is on
disk before the handler goes on), in a fresh base dir, on free loopback ports for ingress,
admin and the node-to-node fabric; only the addresses, the node name and the telemetry switch
are set. The service (:mod:`bench.harness.apps.restate_app`) runs on Hypercorn with the
settings the SDK's docs give for production (HTTP/2 streams, keep-alive, several workers) and
is registered through the admin API. A run is one request to the ingress, which answers
once the handler has finished (request/response ingress).

The server looks up its latest release on GitHub once at start, whatever the config says; with
no route out that attempt fails at once (one ERROR line from ``octocrab`` in its log) and
changes nothing else.

    bash bench/setup   # installs the server under bench/peers/node_modules
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import time
from importlib import metadata
from pathlib import Path

import aiohttp
import orjson

from bench.harness.procs import (
    BENCH_DIR,
    ROOT,
    Proc,
    free_port,
    python,
    tree,
    wait_http,
)
from bench.harness.systems.base import Kind, System

PEERS = BENCH_DIR / "peers"
EXPECTED = {"one": 1, "ten": 45}
# Hypercorn's settings from the SDK's "production server" guide, but one worker per core: the
# guide's 8 workers were 25-35 % slower than 2 on this 2-core machine (measured 2026-12-03:
# 519 vs 418 and 390 vs 301 one-step runs/s with 64 in flight), and the peer gets its best.
HYPERCORN_WORKERS = os.cpu_count() or 2


def server_binary() -> Path:
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    system = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
    path = PEERS / "node_modules" / "@restatedev" / f"restate-server-{system}-{arch}" / "bin" / "restate-server"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run bench/setup")
    return path


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/pid/stat), to tell it from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def server_version() -> str:
    pkg = PEERS / "node_modules" / "@restatedev" / "restate-server" / "package.json"
    return str(json.loads(pkg.read_text())["version"])


class RestateSystem(System):
    name, label = "restate", "Restate (restate-server + Python SDK)"

    def __init__(self, workers: int = HYPERCORN_WORKERS) -> None:
        super().__init__()
        self.workers = workers
        self.ingress_port = self.admin_port = self.fabric_port = self.app_port = 0
        self.base_dir = ""
        self.http: aiohttp.ClientSession | None = None

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def engine_names(self) -> set[str]:
        return {"restate-server"}

    def write_configs(self) -> tuple[Path, Path]:
        base = Path(self.base_dir)
        server_toml = base / "restate.toml"
        server_toml.write_text(
            # Addresses only: everything that decides durability and throughput stays default.
            'listen-mode = "tcp"\n'
            'node-name = "bench"\n'
            f'base-dir = "{base / "data"}"\n'
            f'bind-address = "127.0.0.1:{self.fabric_port}"\n'
            f'advertised-address = "http://127.0.0.1:{self.fabric_port}/"\n'
            "disable-telemetry = true\n"
            "[ingress]\n"
            f'bind-address = "127.0.0.1:{self.ingress_port}"\n'
            f'advertised-ingress-endpoint = "{self.ingress}/"\n'
            "[admin]\n"
            f'bind-address = "127.0.0.1:{self.admin_port}"\n'
            f'advertised-admin-endpoint = "{self.admin}/"\n'
        )
        app_toml = base / "hypercorn.toml"
        app_toml.write_text(
            f'bind = "127.0.0.1:{self.app_port}"\n'
            "h2_max_concurrent_streams = 2147483647\n"
            "keep_alive_max_requests = 2147483647\n"
            "keep_alive_timeout = 2147483647\n"
            f"workers = {self.workers}\n"
            'worker_class = "uvloop"\n'
        )
        return server_toml, app_toml

    async def start(self) -> None:
        self.ingress_port, self.admin_port = free_port(), free_port()
        self.fabric_port, self.app_port = free_port(), free_port()
        self.base_dir = self.data_dir("restate")
        server_toml, app_toml = self.write_configs()
        server = Proc("restate-server", [str(server_binary()), "--config-file", str(server_toml),
                                         "--no-logo", "--log-format", "compact",
                                         "--log-disable-ansi-codes", "true"],
                      cwd=self.base_dir, env={"DO_NOT_TRACK": "1"})
        self.processes.append(server)
        app = Proc("restate-app", python("-m", "hypercorn", "--config", str(app_toml),
                                         "bench.harness.apps.restate_app:app"), cwd=ROOT)
        self.processes.append(app)
        await wait_http(self.admin + "/health", server)
        await wait_http(self.ingress + "/restate/health", server)
        await wait_http(f"http://127.0.0.1:{self.app_port}/health", app)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        await self.register()

    async def register(self) -> None:
        assert self.http is not None
        body = orjson.dumps({"uri": f"http://127.0.0.1:{self.app_port}/"})
        async with self.http.post(self.admin + "/deployments", data=body,
                                  headers={"content-type": "application/json"}) as r:
            text = await r.text()
            if r.status not in (200, 201):
                raise RuntimeError(f"registration failed: {r.status} {text}")
        # The ingress learns of the new service through metadata propagation: wait for it.
        for _ in range(200):
            try:
                await self.run("one", 0)
                return
            except (RuntimeError, aiohttp.ClientError):
                await asyncio.sleep(0.05)
        await self.run("one", 0)

    async def run(self, kind: Kind, i: int) -> None:
        assert self.http is not None
        async with self.http.post(f"{self.ingress}/bench/{kind}", data=b"%d" % i,
                                  headers={"content-type": "application/json"}) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"ingress answered {r.status}: {body[:200]!r}")
        if orjson.loads(body) != EXPECTED[kind]:
            raise RuntimeError(f"bench/{kind} returned {body!r}")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        # Hypercorn's workers (and multiprocessing's resource tracker) can outlive their master
        # by a moment: wait for the whole tree, so the next system starts on a quiet machine.
        pids = [(p, _start_time(p)) for proc in self.processes for p in tree(proc.pid)]
        await super().stop()
        deadline = time.monotonic() + 10
        for pid, started in pids:
            while started and _start_time(pid) == started and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if started and _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # (base_dir is one of the system's data directories: System.stop removed it)

    def describe(self) -> dict[str, str]:
        return {
            "restate-server": server_version(),
            "restate-sdk": metadata.version("restate-sdk"),
            "hypercorn": metadata.version("hypercorn"),
            "server": "single node, all roles, default config (replicated loglet on the local "
                      "log server with its RocksDB WAL fsync on, 24 partitions, default log "
                      "filter warn,restate=info); set: TCP-only listeners on loopback ports, "
                      "node name, disable-telemetry",
            "app": f"Hypercorn, {self.workers} workers (one per core; the SDK docs' production config "
                   "otherwise, whose 8 workers were slower here), "
                   "uvloop, HTTP/2 (bidi-stream protocol)",
            "trigger": "POST /bench/{kind} to the ingress, answered when the handler finished; "
                       "plain service, no idempotency key",
            "cpus": str(os.cpu_count()),
        }
