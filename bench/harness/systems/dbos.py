"""DBOS: the ``dbos`` library inside a FastAPI/uvicorn app, on the local PostgreSQL.

Each start creates a fresh database ``bench_dbos_<random>`` on the PostgreSQL at
127.0.0.1:5432 (user postgres, trust auth) as DBOS's system database, and each stop drops it.
DBOS runs on its defaults: every workflow start, step output and workflow end is a committed
Postgres transaction (the server's ``synchronous_commit`` and ``fsync`` as configured, read
back into :meth:`describe`), 20 pooled connections. A run is ``POST /run/{kind}`` to the app,
answered with the workflow's result once it has completed.

DBOS's engine is a library, so the engine process is the app itself; Postgres's backends
serving the app's database are reported separately by :meth:`DBOSSystem.postgres_memory`
(proportional set size, so shared buffers are not counted once per backend).
"""

from __future__ import annotations

import secrets
from importlib import metadata
from typing import Any

import aiohttp
import orjson

from bench.harness.procs import ROOT, Proc, free_port, python, wait_http
from bench.harness.systems.base import Kind, System

PG_URL = "postgresql://postgres@127.0.0.1:5432"
EXPECTED = {"one": 1, "ten": 45}


def _admin() -> Any:
    import psycopg  # installed with dbos (bench/requirements.txt)

    return psycopg.connect(PG_URL + "/postgres", autocommit=True)


def _smaps(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


class DBOSSystem(System):
    name, label = "dbos", "DBOS (FastAPI app + Postgres)"

    def __init__(self, style: str = "sync") -> None:
        super().__init__()
        self.style = style
        if style != "sync":
            self.name, self.label = f"dbos-{style}", f"DBOS, {style} workflows (FastAPI app + Postgres)"
        self.port = 0
        self.database = ""
        self.http: aiohttp.ClientSession | None = None

    def engine_names(self) -> set[str]:
        return {"dbos-app"}

    async def start(self) -> None:
        self.database = f"bench_dbos_{secrets.token_hex(6)}"
        with _admin() as db:
            db.execute(f'CREATE DATABASE "{self.database}"')
        self.port = free_port()
        app = Proc("dbos-app", python("-m", "bench.harness.apps.dbos_app", str(self.port), self.style),
                   cwd=ROOT, env={"DBOS_SYSTEM_DATABASE_URL": f"{PG_URL}/{self.database}"})
        self.processes.append(app)
        await wait_http(f"http://127.0.0.1:{self.port}/healthz", app)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def run(self, kind: Kind, i: int) -> None:
        assert self.http is not None
        async with self.http.post(f"http://127.0.0.1:{self.port}/run/{kind}?i={i}") as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"POST /run/{kind} answered {r.status}: {body[:200]!r}")
        if orjson.loads(body) != EXPECTED[kind]:
            raise RuntimeError(f"{kind} returned {body!r}")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        await super().stop()
        if self.database:
            with _admin() as db:
                db.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.database = ""

    def postgres_backend_pids(self) -> list[int]:
        """The Postgres backends connected to this run's database (DBOS's connection pool)."""
        if not self.database:
            return []
        with _admin() as db:
            rows = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                              (self.database,)).fetchall()
        return [int(r[0]) for r in rows]

    def postgres_memory(self) -> dict[str, int]:
        """Memory of the backends serving DBOS: count, summed RSS, PSS and private bytes.

        RSS counts the shared buffers each backend has touched once per backend; PSS shares
        them out, and private memory is what each backend alone holds. The postmaster and
        Postgres's own background processes (shared by everything on this server) are not
        included.
        """
        pids = self.postgres_backend_pids()
        total = {"backends": len(pids), "rss": 0, "pss": 0, "private": 0}
        for pid in pids:
            m = _smaps(pid)
            total["rss"] += m.get("Rss", 0)
            total["pss"] += m.get("Pss", 0)
            total["private"] += m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
        return total

    def describe(self) -> dict[str, str]:
        with _admin() as db:
            settings = dict(db.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('server_version', 'synchronous_commit', 'fsync', 'max_connections')").fetchall())
        return {
            "dbos": metadata.version("dbos"),
            "fastapi": metadata.version("fastapi"),
            "uvicorn": metadata.version("uvicorn"),
            "postgres": str(settings.get("server_version", "?")),
            "durability": f"DBOS defaults (checkpoint per step, committed); Postgres "
                          f"synchronous_commit={settings.get('synchronous_commit')}, "
                          f"fsync={settings.get('fsync')}",
            "app": f"one uvicorn process (uvloop, httptools), {self.style} workflows and steps"
                   + (", run on FastAPI's thread pool (anyio default: 40 threads)"
                      if self.style == "sync" else ", DBOS's thread pool for database calls")
                   + "; DBOS system-database pool: 20 connections (default)",
            "engine memory": "the app process (DBOS is a library); Postgres backends are "
                             "reported apart by postgres_memory() (PSS), the server is shared",
        }
