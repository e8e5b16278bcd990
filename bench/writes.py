"""Store writes and SQL statements per one-step run, counted from the store itself.

    python -m bench.writes [--runs 400] [--concurrency 1] [--shape two|one|checkpoint]
                           [--postgres-uri postgresql://127.0.0.1:5433/test]

Runs pyngest's service in this process on a fresh SQLite directory (or a fresh schema of the
PostgreSQL database given) with a scripted app without an SDK, sends ``--runs`` events that each
start a one-step run, and reports per run:

- **batches**: the batches committed about the run (an op naming it, or the insert of its event);
  each of a run's stages waits for the commit of the one before, so this is the number of commits
  the run takes part in;
- **commits**: group commits of the store over the whole measurement, divided by the runs (with
  several runs in flight, runs share commits);
- **statements**: SQL statements the writer executed, by kind. SQLite: the writer connection's
  trace callback (``BEGIN``/``COMMIT`` left out). PostgreSQL: ``pg_stat_statements`` with
  ``track = all``, statements run inside ``pyngest_apply`` (not top level), so the server needs
  the extension preloaded (a cluster of its own: it is reset before measuring).

``--shape two`` answers like a non-checkpointing SDK: the step (206 ``StepRun``), then, in a second
request, the result (200). ``--shape one`` answers like an SDK that runs on after the step: the
step and ``RunComplete`` in one 206 (pyngest's SDK with its checkpointing). ``--shape checkpoint``
does what the npm SDK v4 does with its checkpointing on (its default): it checkpoints the step
(``POST /v1/checkpoint/{run}/async``, awaited) and then answers ``RunComplete`` alone.

On PostgreSQL the report also says how many of the written batches went set-wise (one statement
each, ``pyngest_apply_setwise``) rather than op by op.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from pyngest.clock import RealClock
from pyngest.server.api.app import build_app
from pyngest.server.config import ServerConfig
from pyngest.server.model import Batch, CommitResult, InsertEvents, op_run_id
from pyngest.server.service import Service

HEADERS = {"X-Inngest-SDK": "bench-raw:v0", "x-inngest-req-version": "2", "Content-Type": "application/json"}
STEP = hashlib.sha1(b"s0").hexdigest()


class ScriptedApp:
    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.done: dict[int, asyncio.Future[None]] = {}
        self.server: httpx.AsyncClient | None = None  # for checkpoints

    async def execute(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        i = body["event"]["data"]["i"]
        step = {"op": "StepRun", "id": STEP, "name": "s0", "displayName": "s0", "data": 1}
        complete = {"op": "RunComplete", "id": hashlib.sha1(b"complete").hexdigest(), "data": 1}
        if self.shape == "checkpoint":
            assert self.server is not None
            run_id = body["ctx"]["run_id"]
            resp = await self.server.post(f"/v1/checkpoint/{run_id}/async", json={
                "run_id": run_id, "generation_id": body["ctx"].get("generation_id"), "steps": [step]})
            assert resp.status_code == 200, resp.text
            self._finished(i)
            return web.Response(body=orjson.dumps([complete]), status=206, headers=HEADERS)
        if self.shape == "one":
            self._finished(i)
            ops = [step, complete]
            return web.Response(body=orjson.dumps(ops), status=206, headers=HEADERS)
        if body["steps"]:
            self._finished(i)
            return web.Response(body=b"1", headers=HEADERS)
        return web.Response(body=orjson.dumps([step]), status=206, headers=HEADERS)

    def _finished(self, i: int) -> None:
        fut = self.done.get(i)
        if fut is not None and not fut.done():
            fut.set_result(None)


def kind_of(sql: str) -> str:
    words = sql.split()
    if not words:
        return "?"
    verb = words[0].upper()
    upper = [w.upper() for w in words]
    table = ""
    for marker in ("INTO", "FROM", "UPDATE"):
        if marker in upper[:6]:
            idx = upper.index(marker)
            if idx + 1 < len(words):
                table = words[idx + 1].split("(")[0]
                break
    return f"{verb} {table}".strip()


class SqliteStatements:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False

    def trace(self, sql: str) -> None:
        if self.on and not sql.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            self.counts[kind_of(sql)] += 1


async def pg_reset(uri: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(uri)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def pg_statements(uri: str) -> tuple[Counter[str], float, float]:
    """The statements run inside ``pyngest_apply`` by kind; PostgreSQL's own execution time (ms,
    ``total_exec_time``) of the top-level ``pyngest_apply`` calls, and of the statements inside."""
    import asyncpg

    conn = await asyncpg.connect(uri)
    try:
        rows = await conn.fetch(
            "SELECT query, calls, total_exec_time, toplevel FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())")
    finally:
        await conn.close()
    out: Counter[str] = Counter()
    apply_ms = inner_ms = 0.0
    for r in rows:
        if r["toplevel"]:
            if "pyngest_apply(" in r["query"]:
                apply_ms += r["total_exec_time"]
            continue
        out[kind_of(r["query"])] += int(r["calls"])
        inner_ms += r["total_exec_time"]
    return out, apply_ms, inner_ms


def backend_cpu_ns(pid: int) -> int:
    """A PostgreSQL backend's CPU time so far (ns), when the server runs on this machine, else 0."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except OSError:
        return 0


def watch_shapes(shapes: Counter[str]) -> None:
    """Count the set-wise batches by the kinds of rows they have (what a statement form must cover)."""
    from pyngest.server.store.postgres import store as pg_store

    plain = getattr(pg_store, "setwise", None)
    if plain is None:  # a pyngest before the set-wise batches
        return

    def counted(ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        rows = plain(ops)
        if rows is not None:
            shapes[" ".join(sorted(k for k in rows if k in ("ev", "runs", "djob", "drj", "enq", "upd", "step",
                                                             "hist")))] += 1
        return rows

    pg_store.setwise = counted  # type: ignore[assignment]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pyngest-writes-"))
    config: dict[str, Any] = {"sqlite_dir": tmp, "discovery": False, "poll": False}
    schema = None
    if args.postgres_uri:
        import asyncpg

        schema = f"writes_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(args.postgres_uri)
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.close()
        sep = "&" if "?" in args.postgres_uri else "?"
        config["postgres_uri"] = f"{args.postgres_uri}{sep}options=-csearch_path%3D{schema}"
    service = Service(ServerConfig(**config), clock=RealClock())
    app = ScriptedApp(args.shape)
    web_app = web.Application()
    web_app.router.add_post("/api/inngest", app.execute)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/api/inngest"
    await service.start(sync_apps=False)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(service)), base_url="http://localhost")
    app.server = http
    try:
        outcome = await service.registry.register({
            "appName": "bench-writes", "url": url, "sdk": "py:v0", "framework": "aiohttp",
            "functions": [{"id": "one", "name": "one", "triggers": [{"event": "bench/one"}],
                           "steps": {"step": {"id": "step", "name": "step",
                                              "runtime": {"type": "http", "url": f"{url}?fnId=one&stepId=step"}}}}],
        })
        await service.after_sync(outcome)
        await asyncio.sleep(0.5)  # let start-up work (leases, first matching rounds) settle

        batches: list[Batch] = []

        def observe(batch: Batch, result: CommitResult) -> None:
            batches.append(batch)

        service.state.observers.append(observe)
        groups = [0]
        shapes: Counter[str] = Counter()
        sqlite_stmts = SqliteStatements()
        store: Any = service.store
        if args.postgres_uri:
            store.committed.append(lambda done: groups.__setitem__(0, groups[0] + 1))
            await pg_reset(args.postgres_uri)
            watch_shapes(shapes)
            writer_pid = (await store._writer_connection()).get_server_pid()
            writer_cpu = backend_cpu_ns(writer_pid)
            setwise_before = getattr(store, "setwise_batches", 0)
        else:
            await store.db.write(lambda conn: conn.set_trace_callback(sqlite_stmts.trace))
            sqlite_stmts.on = True
            commits_before = store.db.commits

        sem = asyncio.Semaphore(args.concurrency)
        event_ids: dict[int, str] = {}

        async def one(i: int) -> None:
            async with sem:
                fut = app.done[i] = asyncio.get_running_loop().create_future()
                resp = await http.post("/e/k", json={"name": "bench/one", "data": {"i": i}})
                assert resp.status_code == 200, resp.text
                event_ids[i] = resp.json()["ids"][0]
                await fut

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.runs)))
        await asyncio.sleep(0.5)  # the runs' last commits land after the app's answer
        elapsed = time.perf_counter() - started
        apply_ms = inner_ms = 0.0
        writer_cpu = 0
        if args.postgres_uri:
            commits = groups[0]
            statements, apply_ms, inner_ms = await pg_statements(args.postgres_uri)
            writer_cpu = backend_cpu_ns(writer_pid) - writer_cpu
        else:
            sqlite_stmts.on = False
            commits = store.db.commits - commits_before
            statements = sqlite_stmts.counts
        runs = await service.store.runs_for_event(event_ids[0])
        run_of_event = {}
        for i, eid in event_ids.items():
            rs = await service.store.runs_for_event(eid) if i else runs
            run_of_event[eid] = rs[0].id
        per_run = []
        for eid, rid in run_of_event.items():
            per_run.append(sum(1 for b in batches if any(
                op_run_id(op) == rid or (isinstance(op, InsertEvents) and any(e.internal_id == eid for e in op.events))
                for op in b.ops)))
        return {
            "store": "postgres" if args.postgres_uri else "sqlite", "shape": args.shape, "runs": args.runs,
            "concurrency": args.concurrency, "seconds": round(elapsed, 2),
            "batches_per_run": round(sum(per_run) / len(per_run), 2),
            "commits_per_run": round(commits / args.runs, 2),
            "statements_per_run": round(sum(statements.values()) / args.runs, 2),
            "statements": {k: round(v / args.runs, 2) for k, v in statements.most_common()},
            **({"batches_written": sum(1 for b in batches if b.ops),
                "batches_setwise": getattr(store, "setwise_batches", 0) - setwise_before,
                # PostgreSQL's execution time of the writer's pyngest_apply calls (the statements
                # inside included; their own share: inner), per run, in ms
                "apply_exec_ms_per_run": round(apply_ms / args.runs, 4),
                "inner_exec_ms_per_run": round(inner_ms / args.runs, 4),
                # the writer backend's CPU time per run (ms; this machine's server only): less
                # sensitive to other processes' load than the execution times, which are elapsed
                "writer_cpu_ms_per_run": round(writer_cpu / 1e6 / args.runs, 4),
                "setwise_shapes": dict(shapes.most_common())} if args.postgres_uri else {}),
        }
    finally:
        await http.aclose()
        service.config.shutdown_grace_s = 1
        await service.stop()
        await runner.cleanup()
        if schema is not None:
            import asyncpg

            conn = await asyncpg.connect(args.postgres_uri)
            with contextlib.suppress(Exception):
                await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--shape", choices=("two", "one", "checkpoint"), default="two")
    ap.add_argument("--postgres-uri", default=None)
    args = ap.parse_args()
    print(orjson.dumps(asyncio.run(measure(args)), option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    assert sqlite3.sqlite_version_info >= (3, 35)
    main()
