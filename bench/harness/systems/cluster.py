"""pyngest scaled out: N ``pyngest dev`` processes on one PostgreSQL database and Redis, with the
app on pyngest's SDK. Events are posted to the processes in turn; the app is synced through
the first one and talks to it (checkpoints for runs another process owns are forwarded).

The database is this machine's PostgreSQL (``BENCH_POSTGRES_URI``, default the local ``test``
database), in a schema of its own created for the run and dropped after; Redis is
``BENCH_REDIS_URI``. Their CPU is reported apart from the engine's (``backing_pids``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import uuid
from importlib import metadata

import aiohttp
import asyncpg

from bench.harness.notify import ENV as NOTIFY_ENV
from bench.harness.procs import ROOT, Proc, free_port, python, wait_http
from bench.harness.systems.pyngest import PyngestSDK

POSTGRES_URI = os.environ.get("BENCH_POSTGRES_URI", "postgresql://127.0.0.1:5432/test")
REDIS_URI = os.environ.get("BENCH_REDIS_URI", "redis://127.0.0.1:6379/0")


class PyngestCluster(PyngestSDK):
    nodes = 1

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[int] = []
        self.pg_data = ""  # the database server's data directory (its processes are measured)
        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        self._turn = itertools.count()

    @property
    def uri(self) -> str:
        sep = "&" if "?" in POSTGRES_URI else "?"
        return f"{POSTGRES_URI}{sep}search_path={self.schema}"

    async def start(self) -> None:
        conn = await asyncpg.connect(POSTGRES_URI)
        try:
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
            self.pg_data = str(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()
        await self.completions.start()
        self.ports = [free_port() for _ in range(self.nodes)]
        self.port, self.app_port = self.ports[0], free_port()
        for n, port in enumerate(self.ports):
            server = Proc(f"pyngest-{n}", python(
                "-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll", "-p", str(port),
                "--host", "127.0.0.1", "--sqlite-dir", self.data_dir("unused"), "--postgres-uri", self.uri,
                "--redis-uri", REDIS_URI, "-l", "warn"), cwd=ROOT)
            self.processes.append(server)
            await wait_http(f"http://127.0.0.1:{port}/health", server)
        app = Proc(f"app-{self.app_kind}", self.app_argv(), cwd=ROOT, env={
            NOTIFY_ENV: self.completions.address, "INNGEST_DEV": self.base, "INNGEST_BASE_URL": self.base,
        })
        self.processes.append(app)
        await wait_http(f"http://127.0.0.1:{self.app_port}/healthz", app)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        await self.sync()
        await self.balanced()

    async def balanced(self) -> None:
        """Until the shards are spread over every process."""
        conn = await asyncpg.connect(self.uri)
        try:
            for _ in range(600):
                owners = await conn.fetch("SELECT owner, count(*) FROM shards WHERE owner IS NOT NULL GROUP BY owner")
                total = await conn.fetchval("SELECT count(*) FROM shards")
                counts = [r[1] for r in owners]
                if len(counts) == self.nodes and sum(counts) == total and max(counts) - min(counts) <= 1:
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        raise RuntimeError(f"shards never spread over {self.nodes} processes: {owners}")

    def engine_names(self) -> set[str]:
        return {f"pyngest-{n}" for n in range(self.nodes)}

    def backing_pids(self, name: str = "") -> list[int]:
        """PostgreSQL's (``postgres``) or Redis's (``redis``) processes, or both. PostgreSQL's are
        the postmaster of the benchmark's database and its children (another PostgreSQL server
        on the machine is not counted); Redis's are every ``redis-server``, so nothing else may
        use Redis while measured."""
        pids = []
        if name in ("", "postgres"):
            pids += self._postgres_pids()
        if name in ("", "redis"):
            out = subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True, check=False).stdout
            pids += [int(p) for p in out.split()]
        return pids

    def _postgres_pids(self) -> list[int]:
        try:
            with open(os.path.join(self.pg_data, "postmaster.pid")) as f:
                postmaster = int(f.readline())
        except (OSError, ValueError):  # not readable here: every postgres process
            out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False).stdout
            return [int(p) for p in out.split()]
        out = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False).stdout
        return [postmaster, *(int(p) for p in out.split())]

    def event_base(self) -> str:
        return f"http://127.0.0.1:{self.ports[next(self._turn) % self.nodes]}"

    async def stop(self) -> None:
        await super().stop()
        conn = await asyncpg.connect(POSTGRES_URI)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()

    def describe(self) -> dict[str, str]:
        version = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
        redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
        return {"pyngest": metadata.version("pyngest"),
                "store": f"PostgreSQL ({version}; synchronous_commit=on), {self.nodes} pyngest process(es), "
                         f"Redis ({redis.split()[2] if redis else '?'}) for wake-ups"}


class PyngestPG1(PyngestCluster):
    name, label, nodes = "pyngest-pg1", "pyngest on PostgreSQL + Redis, 1 process", 1


class PyngestPG2(PyngestCluster):
    name, label, nodes = "pyngest-pg2", "pyngest on PostgreSQL + Redis, 2 processes", 2


class PyngestPG3(PyngestCluster):
    name, label, nodes = "pyngest-pg3", "pyngest on PostgreSQL + Redis, 3 processes", 3
