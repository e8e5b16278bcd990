"""Dashboard server time with a long history: the runs page and the run page at 100,000 runs.

    python bench/dashboard_history.py [--runs 100000] [--repeat 20]

Seeds a fresh SQLite store directly (batch inserts: runs, their events, 6 history rows and 3
step outputs each, over the last 3 days, 3 functions, ~10% failed), then sends the exact GraphQL
queries the pages send through the ASGI app in-process and reports the median and worst server
time of each. No HTTP client or browser time is included.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pyngest.protocol import jcs  # noqa: E402
from pyngest.protocol.durations import iso_ms  # noqa: E402
from pyngest.protocol.ids import new_ulid  # noqa: E402
from pyngest.server.api.app import build_app  # noqa: E402
from pyngest.server.config import ServerConfig  # noqa: E402
from pyngest.server.service import Service  # noqa: E402

RUNS_QUERY = (ROOT / "src/pyngest/server/ui/static/runs.js").read_text()


def _query(name: str) -> str:
    """The page's own query text, taken from its module (so the bench measures what ships)."""
    start = RUNS_QUERY.index(f"const {name} = `") + len(f"const {name} = `")
    text = RUNS_QUERY[start:RUNS_QUERY.index("`;", start)]
    span = RUNS_QUERY[RUNS_QUERY.index("const SPAN = `") + 14:RUNS_QUERY.index("`;", RUNS_QUERY.index("const SPAN = `"))]
    return text.replace("${SPAN}", span)


def seed(db: Path, runs: int, fns: list[tuple[str, str, str]]) -> list[str]:
    conn = sqlite3.connect(db)
    now = int(time.time() * 1000)
    span = 3 * 86_400_000
    rng = random.Random(7)
    run_ids = []
    batch_runs, batch_events, batch_hist, batch_steps, batch_links = [], [], [], [], []

    def flush() -> None:
        conn.executemany("INSERT INTO runs(id, fn_id, app_id, fn_version, status, event_ids, queued_ms, started_ms, "
                         "ended_ms, output, version, attrs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch_runs)
        conn.executemany("INSERT INTO events(internal_id, name, event_id, ts, received_ms, source, body) "
                         "VALUES (?,?,?,?,?,?,?)", batch_events)
        conn.executemany("INSERT INTO history(run_id, at_ms, kind, step_id, name, attempt, data) VALUES (?,?,?,?,?,?,?)",
                         batch_hist)
        conn.executemany("INSERT INTO steps(run_id, step_id, pos, value) VALUES (?,?,?,?)", batch_steps)
        conn.executemany("INSERT INTO run_events(event_internal_id, run_id) VALUES (?,?)", batch_links)
        for b in (batch_runs, batch_events, batch_hist, batch_steps, batch_links):
            b.clear()

    for i in range(runs):
        t = now - span + (span * i) // runs
        fn_id, app_id, slug = fns[i % len(fns)]
        eid = new_ulid(t)
        rid = new_ulid(t)
        failed = rng.random() < 0.1
        body = jcs.dumps({"name": "bench/order.created", "id": eid, "ts": t, "user": {},
                          "data": {"orderId": f"o{i}", "amount": i % 500}})
        output = jcs.dumps({"name": "Error", "message": "boom"}) if failed else jcs.dumps({"ok": True, "n": i})
        batch_events.append((eid, "bench/order.created", eid, t, t, "", body))
        batch_links.append((eid, rid))
        batch_runs.append((rid, fn_id, app_id, 1, "Failed" if failed else "Completed", orjson.dumps([eid]), t, t + 5,
                           t + 900, output, 2, orjson.dumps({"fn_slug": slug})))
        batch_hist += [(rid, t, "FunctionScheduled", None, None, None, None),
                       (rid, t + 5, "FunctionStarted", None, None, None, None)]
        for n, name in enumerate(("reserve", "charge", "notify")):
            sid = f"{name}-{i}"
            at = t + 10 + 200 * n
            batch_steps.append((rid, sid, n, jcs.dumps({"data": {"step": name}})))
            batch_hist.append((rid, at, "StepCompleted", sid, name, 0,
                               orjson.dumps({"started_ms": at - 150, "ended_ms": at})))
        batch_hist.append((rid, t + 900, "FunctionFailed" if failed else "FunctionCompleted", None, None, None, output))
        run_ids.append(rid)
        if len(batch_runs) >= 10_000:
            flush()
    flush()
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return run_ids


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pyngest-bench-"))
    service = Service(ServerConfig(sqlite_dir=tmp, discovery=False, poll=False))
    await service.start(sync_apps=False)  # creates the schema
    outcome = await service.registry.register({
        "appName": "bench", "url": "http://127.0.0.1:9/api/inngest", "sdk": "py:v0.5.19",
        "functions": [{"id": f"bench-fn{n}", "name": f"fn{n}", "triggers": [{"event": "bench/order.created"}],
                       "steps": {"step": {"id": "step", "name": "step", "runtime": {
                           "type": "http", "url": f"http://127.0.0.1:9/api/inngest?fnId=bench-fn{n}&stepId=step"}}}}
                      for n in range(3)],
    })
    fns = [(f.id, f.app_id, f.slug) for f in outcome.functions]
    await service.stop()
    t0 = time.perf_counter()
    run_ids = seed(tmp / "main.db", args.runs, fns)
    print(f"seeded {args.runs} runs in {time.perf_counter() - t0:.1f}s "
          f"({(tmp / 'main.db').stat().st_size / 1e6:.0f} MB)")

    service = Service(ServerConfig(sqlite_dir=tmp, discovery=False, poll=False))
    await service.start(sync_apps=False)
    app = build_app(service)
    since = iso_ms(int(time.time() * 1000) - 86_400_000)
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "runs page (24h, 40 newest)": (_query("RUNS"), {"first": 40, "filter": {"from": since}}),
        "runs page, status Failed": (_query("RUNS"), {"first": 40, "filter": {"from": since, "status": ["FAILED"]}}),
        "runs page, one function": (_query("RUNS"), {"first": 40, "filter": {"from": since, "functionIDs": [fns[1][0]]}}),
        "runs page, 3 days, 200 rows": (_query("RUNS"), {"first": 200, "filter": {"from": iso_ms(0)}}),
        "run page (trace + trigger)": (_query("RUN"), {"id": run_ids[len(run_ids) // 2]}),
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        for label, (query, variables) in cases.items():
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                resp = await http.post("/v0/gql", json={"query": query, "variables": variables})
                times.append((time.perf_counter() - t) * 1000)
                body = resp.json()
                assert resp.status_code == 200 and not body.get("errors"), body
            print(f"{label:32s} median {statistics.median(times):6.1f} ms   worst {max(times):6.1f} ms")
    await service.stop()


if __name__ == "__main__":
    asyncio.run(main())
