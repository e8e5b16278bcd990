"""The server with many pending waits: its memory, and the index rebuild on start.

    python bench/pause_server.py [--pauses 100000] [--events 2000]

Stores ``--pauses`` pending waitForEvent pauses directly through the SQLite store, as the
executor commits them (the pause, with its condition from bench/expr_index.py's mix
interpolated with its run's event, and its timeout job due in a day), then starts a real
``pyngest dev`` process on that directory and reports:

- the index rebuild on start: the server's own log line (pauses read from the store and
  indexed), and the time from launch until ``/health`` answers;
- the server's RSS once it serves, and its peak so far (VmHWM);
- RSS again after ``--events`` events of the pauses' name went through the matcher (half of
  them fulfil a pause; the runs do not exist, so a fulfilled pause is just deleted);

and the same for a server on an empty directory, for comparison. Per-event matching time is
measured in-process by bench/expr_index.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from expr_index import EVENT, pause_expression

from pyngest.clock import RealClock
from pyngest.protocol.ids import new_ulid
from pyngest.protocol.step_ids import hash_step_id
from pyngest.server.model import AddPause, Batch, Enqueue, Job, JobKind, Pause, PauseKind
from pyngest.server.store.sqlite.store import SqliteStore

CHUNK = 5_000
REBUILT = re.compile(r"pause index rebuilt: (\d+) pending pauses .* in ([0-9.]+) s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def store_pauses(directory: Path, n: int, seed: int) -> float:
    """Commit ``n`` waits (pause + timeout job) through the store; returns the seconds taken."""
    rng = random.Random(seed)
    clock = RealClock()
    store = SqliteStore(directory, clock)
    await store.open()
    step_id = hash_step_id("wait-for-payment")
    started = time.perf_counter()
    try:
        for first in range(0, n, CHUNK):
            now = clock.now_ms()
            batch = Batch()
            for i in range(first, min(n, first + CHUNK)):
                run_id = new_ulid(now)
                pause = Pause(
                    id=f"{run_id}:{step_id}", run_id=run_id, step_id=step_id, kind=PauseKind.WAIT,
                    expires_ms=now + 86_400_000, after_seq=0, event_name=EVENT,
                    expression=pause_expression(i, rng), data={"name": "wait-for-payment", "race": False},
                )
                batch.add(AddPause(pause))
                batch.add(Enqueue(Job(
                    id=f"{run_id}:t:{step_id}", kind=JobKind.PAUSE_TIMEOUT, due_ms=pause.expires_ms,
                    run_id=run_id, step_id=step_id, payload={"pause_id": pause.id},
                )))
            await store.commit(batch)
    finally:
        await store.close()
    return time.perf_counter() - started


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_idle(pid: int, quiet_s: float = 1.5, timeout_s: float = 600) -> None:
    """Until the process has used no CPU for ``quiet_s`` (its queue has drained)."""
    deadline = time.monotonic() + timeout_s
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return


def measure(directory: Path, events: int, n: int, seed: int) -> dict[str, Any]:
    port = free_port()
    log_path = directory / "server.log"
    launched = time.perf_counter()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll",
             "-p", str(port), "--sqlite-dir", str(directory), "-l", "info"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=30) as http:
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"the server exited:\n{log_path.read_text()}")
                try:
                    if http.get(base + "/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            out["ready_s"] = time.perf_counter() - launched
            found = REBUILT.search(log_path.read_text())
            if found:
                out["indexed"], out["rebuild_s"] = int(found[1]), float(found[2])
            wait_idle(server.pid)
            out["started"] = proc_status(server.pid)

            rng = random.Random(seed + 1)
            sent = 0
            while sent < events:
                size = min(100, events - sent)
                body = [{"name": EVENT, "data": {
                    "userId": f"user-{rng.randrange(n) if n and rng.random() < 0.5 else n + rng.randrange(10**6)}",
                    "orderId": "none", "region": "none", "amount": rng.randint(0, 1000), "tags": [],
                }} for _ in range(size)]
                res = http.post(base + "/e/bench", json=body)
                res.raise_for_status()
                sent += size
            wait_idle(server.pid)
            out["after_events"] = proc_status(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return out


def report(label: str, figures: dict[str, Any]) -> None:
    mib = 1 / 1024
    started, after = figures["started"], figures["after_events"]
    rebuild = (f"{figures['indexed']:,} pauses rebuilt in {figures['rebuild_s']:.2f} s, "
               if "indexed" in figures else "")
    print(f"{label}: {rebuild}/health after {figures['ready_s']:.2f} s; "
          f"RSS {started['VmRSS'] * mib:.0f} MiB once serving (peak {started['VmHWM'] * mib:.0f} MiB), "
          f"{after['VmRSS'] * mib:.0f} MiB after the events (peak {after['VmHWM'] * mib:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pauses", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file (bench/run.py reads it)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pyngest-pause-bench-"))
    try:
        empty, full = root / "empty", root / "full"
        empty.mkdir()
        full.mkdir()
        stored_s = asyncio.run(store_pauses(full, args.pauses, args.seed))
        print(f"stored {args.pauses:,} waits (pause + timeout job) through the store in {stored_s:.1f} s; "
              f"database {sum(f.stat().st_size for f in full.iterdir()) / 2**20:.0f} MiB")
        baseline = measure(empty, args.events, 0, args.seed)
        report("no pauses", baseline)
        loaded = measure(full, args.events, args.pauses, args.seed)
        report(f"{args.pauses:,} pauses", loaded)
        if args.json:
            mib = 1 / 1024
            figures = {
                "pauses": args.pauses, "store_s": round(stored_s, 1),
                "rebuild_s": loaded.get("rebuild_s"), "ready_s": round(loaded["ready_s"], 2),
                "server_rss_mb": round(loaded["after_events"]["VmRSS"] * mib, 1),
                "server_rss_serving_mb": round(loaded["started"]["VmRSS"] * mib, 1),
                "server_peak_mb": round(loaded["after_events"]["VmHWM"] * mib, 1),
                "empty_server_rss_mb": round(baseline["after_events"]["VmRSS"] * mib, 1),
            }
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
