"""Retention purge under intake: POST /e latency while a large purge runs, and the space it gives back.

    python bench/purge.py [--runs 1000000] [--rate 100]

Builds a SQLite database of ``--runs`` ended runs (each with its event, a step, three history
rows) that ended ten days ago, then starts `pyngest dev --retention 1d` on it. The maintenance
job starts a minute after the start: that minute measures POST /e idle, then the purge is measured
until no old run is left and the freed pages are given back. Events are sent at ``--rate`` per
second, each waited for (latency = one request). Prints p50/p99 idle and during the purge, the
purge's duration and longest slice (from the server's log) and the file size before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.procs import Proc, free_port, scratch_dir  # noqa: E402

DAY = 86_400_000


def build(path: Path, runs: int) -> None:
    """A database as the server makes it (schema, incremental vacuum), filled directly."""
    from pyngest.server.store.sqlite.connection import _connect, _migrate, _prepare_vacuum

    conn = _connect(str(path), "normal")
    _prepare_vacuum(conn, str(path))
    _migrate(conn)
    ended = int(time.time() * 1000) - 10 * DAY
    body = b'{"name":"bench/old","data":{"order":12345,"customer":"c-0000001","items":[1,2,3]},"ts":0}'
    conn.execute("BEGIN")
    chunk = 20_000
    for start in range(0, runs, chunk):
        ids = range(start, min(runs, start + chunk))
        conn.executemany(
            "INSERT INTO events(internal_id, name, event_id, ts, received_ms, body) VALUES (?,?,?,?,?,?)",
            [(f"E{i:09d}", "bench/old", f"id-{i}", ended, ended - 5, body) for i in ids])
        conn.executemany(
            "INSERT INTO runs(id, fn_id, app_id, status, event_ids, queued_ms, started_ms, ended_ms, output) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [(f"R{i:09d}", "fn", "app", "Completed", f'["E{i:09d}"]', ended - 4, ended - 3, ended, b'{"ok":true}')
             for i in ids])
        conn.executemany("INSERT INTO run_events(event_internal_id, run_id) VALUES (?,?)",
                         [(f"E{i:09d}", f"R{i:09d}") for i in ids])
        conn.executemany("INSERT INTO steps(run_id, step_id, pos, value) VALUES (?,?,?,?)",
                         [(f"R{i:09d}", "a" * 40, 0, b'{"data":{"charged":true,"amount":4200}}') for i in ids])
        conn.executemany("INSERT INTO history(run_id, at_ms, kind, step_id, name, attempt, data) VALUES (?,?,?,?,?,?,?)",
                         [(f"R{i:09d}", ended - k, kind, "a" * 40, "charge", 0, b'{"x":1}')
                          for i in ids for k, kind in ((3, "started"), (2, "step"), (0, "finished"))])
        if start and start % 200_000 == 0:
            print(f"  built {start:,} runs", flush=True)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=100.0)
    args = ap.parse_args()

    data = Path(scratch_dir("purge"))
    db = data / "main.db"
    t0 = time.monotonic()
    build(db, args.runs)
    before = size(db)
    print(f"built {args.runs:,} ended runs in {time.monotonic() - t0:.0f} s: {before / 1e6:.0f} MB", flush=True)

    port = free_port()
    server = Proc("pyngest", [sys.executable, "-m", "pyngest.server.cli", "dev", "--no-poll", "--port", str(port), "--sqlite-dir",
                              str(data), "--retention", "1d", "--no-discovery", "--log-level", "info"])
    started = time.monotonic()
    idle: list[float] = []
    during: list[float] = []
    phase = "idle"
    purge_began = purge_ended = 0.0
    reader = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while True:
                server.check_alive()
                try:
                    if (await http.get("/health")).status_code < 500:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            next_check = 0.0
            n = 0
            while True:
                n += 1
                t = time.perf_counter()
                resp = await http.post("/e/benchkey", json={"name": "bench/new", "data": {"n": n}})
                took = (time.perf_counter() - t) * 1000
                assert resp.status_code == 200, resp.text
                now = time.monotonic()
                if phase == "idle":
                    if now - started > 5:  # after the start's own work
                        idle.append(took)
                else:
                    during.append(took)
                if now >= next_check:
                    next_check = now + 1.0
                    first_gone = not reader.execute("SELECT 1 FROM runs WHERE id='R000000000'").fetchone()
                    if phase == "idle" and first_gone:
                        phase, purge_began = "purge", now
                        print(f"purge began {now - started:.0f} s after the start; idle samples {len(idle)}",
                              flush=True)
                    elif phase == "purge":
                        left = reader.execute("SELECT COUNT(*) FROM runs WHERE ended_ms < ?",
                                              (int(time.time() * 1000) - DAY,)).fetchone()[0]
                        free = reader.execute("PRAGMA freelist_count").fetchone()[0]
                        if left == 0 and free == 0:
                            purge_ended = now
                            break
                    if now - started > 3600:
                        raise SystemExit("the purge did not end within an hour")
                await asyncio.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - t)))
    finally:
        if reader is not None:
            reader.close()
        server.stop()
    log = server.log_path.read_text(errors="replace")
    passes = [(int(m[0]), int(m[1]), float(m[2])) for m in re.findall(
        r"removed (\d+) runs and events .*?\((\d+) slices, longest ([\d.]+) ms\)", log)]
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    after = size(db)
    print(f"runs purged: {args.runs:,} (+ their events) in {purge_ended - purge_began:.0f} s")
    if passes:
        print(f"maintenance passes: {len(passes)}, slices: {sum(p[1] for p in passes)}, "
              f"longest slice: {max(p[2] for p in passes):.1f} ms")
    print(f"POST /e idle:   n={len(idle)} p50={statistics.median(idle):.2f} ms p99={pct(idle, 0.99):.2f} ms")
    print(f"POST /e purge:  n={len(during)} p50={statistics.median(during):.2f} ms "
          f"p99={pct(during, 0.99):.2f} ms max={max(during):.1f} ms")
    print(f"file size: before {before / 1e6:.0f} MB, after {after / 1e6:.1f} MB")
    shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
