"""The benchmark harness: pyngest against its peers and against the physical floor.

    bench/setup                                   # once: peers (Restate, DBOS) and matplotlib
    .venv/bin/python -m bench.run                 # everything (about 45 minutes)
    .venv/bin/python -m bench.run --quick         # a smoke run of every scenario (minutes)
    .venv/bin/python -m bench.run --only ingest,runs --systems pyngest-raw,floor

Scenarios (docs/benchmarks.md explains each, with the figures of the last full run):

- ``ingest``: events/s into ``POST /e`` with 64 connections, single events and batches of 100.
- ``runs``: for every system, the 1-step and 10-step workflows in a closed loop at 64 in flight
  (throughput) and one at a time (latency), and pyngest's per-step server overhead.
- ``open``: 1-step runs at fixed open-loop arrival rates: completions/s and latency.
- ``waits``: 100,000 and 1,000,000 pending ``waitForEvent`` pauses: matching cost per event
  (``bench/expr_index.py``) and a server's memory and index rebuild (``bench/pause_server.py``).
- ``flow``: the flow-control accuracy figures (``bench/flow_accuracy.py``), summarised.
- ``soak``: 10 minutes of steady load on pyngest: memory and latency minute by minute.

Every system runs alone on the machine while measured (started, measured, stopped), on its
own durable defaults. ``--repeat N`` measures the ``runs`` scenario N times (systems
interleaved) and reports medians; ratios pyngest ÷ peer are taken within each repeat.
The results go to ``bench/results/<UTC time>.json``; ``python -m bench.report`` turns a
results file into the tables and plots of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.harness.load import LoadResult, closed_loop, open_loop, pct
from bench.harness.procs import (
    BENCH_DIR,
    ROOT,
    Proc,
    cpu_seconds,
    free_port,
    machine_ticks,
    python,
    rss_bytes,
    scratch_dir,
    steal_pct,
    wait_http,
)
from bench.harness.systems.base import System
from bench.harness.systems.cluster import PyngestCluster, PyngestPG1, PyngestPG2, PyngestPG3
from bench.harness.systems.floor import Floor
from bench.harness.systems.pyngest import (
    PyngestOfficialSDK,
    PyngestRaw,
    PyngestSDK,
    PyngestSDKClassic,
    PyngestSDKFsync,
)

RESULTS = BENCH_DIR / "results"


def peer_systems() -> dict[str, type[System]]:
    """Restate and DBOS, when ``bench/setup`` has installed them."""
    found: dict[str, type[System]] = {}
    try:
        from bench.harness.systems.restate import RestateSystem

        found[RestateSystem.name] = RestateSystem
    except ImportError as exc:
        print(f"(Restate not available: {exc}; run bench/setup)", file=sys.stderr)
    try:
        from bench.harness.systems.dbos import DBOSSystem

        found[DBOSSystem.name] = DBOSSystem
    except ImportError as exc:
        print(f"(DBOS not available: {exc}; run bench/setup)", file=sys.stderr)
    return found


def all_systems() -> dict[str, type[System]]:
    systems: dict[str, type[System]] = {
        cls.name: cls for cls in (PyngestRaw, PyngestSDK, PyngestSDKClassic, PyngestSDKFsync, PyngestOfficialSDK,
                                  PyngestPG1, PyngestPG2, PyngestPG3)
    }
    systems.update(peer_systems())
    systems[Floor.name] = Floor
    return systems


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit, "load_before": os.getloadavg()}


def calibration() -> dict[str, float]:
    """How fast this machine is right now: a fixed pure-Python loop, and a TCP ping-pong between
    two threads on loopback (the wake-up latency that every hop between processes pays; on a
    virtual machine it varies with the host's load, so runs at different times differ)."""
    import socket
    import threading

    t = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i
    loop_ms = (time.perf_counter() - t) * 1000
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def echo() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(3000):
        t = time.perf_counter()
        client.sendall(b"x")
        client.recv(64)
        rtts.append((time.perf_counter() - t) * 1e6)
    client.close()
    thread.join(timeout=2)
    server.close()
    return {"python_loop_ms": round(loop_ms, 1), "loopback_rtt_p50_us": round(pct(rtts, 50), 1),
            "loopback_rtt_p99_us": round(pct(rtts, 99), 1)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


BACKING = ("postgres", "redis")  # what a scale-out system runs on, measured apart


class Sampler:
    """Samples the engine's memory while a phase runs; CPU is read at both ends, for the engine
    and (``backing``: PostgreSQL and Redis of a scale-out system, found again at the end so
    connections opened meanwhile count) for what it runs on."""

    def __init__(self, pids: list[int], every_s: float = 0.5,
                 backing: Callable[[str], list[int]] | None = None) -> None:
        self.pids, self.every_s = pids, every_s
        self.rss: list[int] = []
        self.cpu0 = cpu_seconds(pids)
        self._backing = backing
        self._backing0 = {name: {p: cpu_seconds([p]) for p in backing(name)} for name in BACKING} if backing else {}
        self.backing_cpu_s: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.rss.append(rss_bytes(self.pids))
            await asyncio.sleep(self.every_s)

    def __enter__(self) -> Sampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.rss.append(rss_bytes(self.pids))
        self.cpu_s = cpu_seconds(self.pids) - self.cpu0
        if self._backing is not None:
            for name in BACKING:
                start = self._backing0[name]
                self.backing_cpu_s[name] = sum(cpu_seconds([p]) - start.get(p, 0.0) for p in self._backing(name))


async def measured(system: System, phase: Callable[[], Awaitable[LoadResult]]) -> dict[str, Any]:
    backing = system.backing_pids if isinstance(system, PyngestCluster) else None
    engine = system.engine_pids()
    app = [p for p in system.all_pids() if p not in engine]  # the workflow's app, where it is apart
    app_cpu0, ticks0 = cpu_seconds(app), machine_ticks()
    with Sampler(engine, backing=backing) as sampler:
        result = await phase()
    app_cpu_s = cpu_seconds(app) - app_cpu0
    out = result.summary()
    out["steal_pct"] = steal_pct(ticks0, machine_ticks())  # the host's share of the vCPUs meanwhile
    out["latency_sample_ms"] = sample(result.latencies_ms)
    out["engine_rss_mb_max"] = round(max(sampler.rss) / 2**20, 1)
    out["engine_cpu_s"] = round(sampler.cpu_s, 2)
    if result.completed:
        out["engine_cpu_ms_per_run"] = round(sampler.cpu_s * 1000 / result.completed, 3)
        if app:
            out["app_cpu_ms_per_run"] = round(app_cpu_s * 1000 / result.completed, 3)
        for name, cpu_s in sampler.backing_cpu_s.items():
            out[f"{name}_cpu_s"] = round(cpu_s, 2)
            out[f"{name}_cpu_ms_per_run"] = round(cpu_s * 1000 / result.completed, 3)
    return out


def sample(values: list[float], n: int = 1000) -> list[float]:
    """At most ``n`` evenly spaced order statistics: enough to draw a latency distribution."""
    s = sorted(values)
    if len(s) <= n:
        return [round(v, 3) for v in s]
    return [round(s[int(k * (len(s) - 1) / (n - 1))], 3) for k in range(n)]


# ------------------------------------------------------------------------------------ runs


async def scenario_runs(system: System, quick: bool) -> dict[str, Any]:
    """Throughput at 64 in flight and latency one at a time, for both workflows."""
    seconds = 3.0 if quick else 15.0
    serial = 30 if quick else 300
    out: dict[str, Any] = {}
    for kind in ("one", "ten"):
        def trigger(i: int, kind: str = kind) -> Awaitable[None]:
            return system.run(kind, i)  # type: ignore[arg-type]

        # warm-up: connections, caches, JIT-less but import-heavy first calls
        await closed_loop(trigger, concurrency=16, runs=64 if quick else 400)
        out[f"{kind}_c64"] = await measured(system, lambda t=trigger: closed_loop(t, concurrency=64, seconds=seconds))
        log(f"  {system.name} {kind} x64: {out[f'{kind}_c64']['per_s']}/s p50 {out[f'{kind}_c64']['p50_ms']} ms"
            f" (steal {out[f'{kind}_c64']['steal_pct']} %)")
        if isinstance(system, PyngestRaw):
            await system.step_gaps_us(clear=True)
        out[f"{kind}_c1"] = await measured(system, lambda t=trigger: closed_loop(t, concurrency=1, runs=serial))
        log(f"  {system.name} {kind} x1: p50 {out[f'{kind}_c1']['p50_ms']} ms p99 {out[f'{kind}_c1']['p99_ms']} ms"
            f" (steal {out[f'{kind}_c1']['steal_pct']} %)")
        if isinstance(system, PyngestRaw) and kind == "ten":
            gaps_ms = [g / 1000 for g in await system.step_gaps_us(clear=True)]
            out["step_overhead_c1"] = {"samples": len(gaps_ms), "p50_ms": round(pct(gaps_ms, 50), 3),
                                       "p99_ms": round(pct(gaps_ms, 99), 3)}
            # the same under load: 64 runs in flight
            await closed_loop(trigger, concurrency=64, seconds=seconds / 2)
            gaps_ms = [g / 1000 for g in await system.step_gaps_us(clear=True)]
            out["step_overhead_c64"] = {"samples": len(gaps_ms), "p50_ms": round(pct(gaps_ms, 50), 3),
                                        "p99_ms": round(pct(gaps_ms, 99), 3)}
            log(f"  step overhead x1 p50 {out['step_overhead_c1']['p50_ms']} p99 {out['step_overhead_c1']['p99_ms']} ms;"
                f" x64 p50 {out['step_overhead_c64']['p50_ms']} p99 {out['step_overhead_c64']['p99_ms']} ms")
    return out


async def scenario_open(system: System, rates: list[float], quick: bool) -> dict[str, Any]:
    """1-step runs arriving at fixed rates; a rate is sustained if completions keep up."""
    seconds = 3.0 if quick else 20.0
    out: dict[str, Any] = {}
    await closed_loop(lambda i: system.run("one", i), concurrency=16, runs=200)
    for rate in rates:
        res = await measured(system, lambda r=rate: open_loop(lambda i: system.run("one", i), rate=r,
                                                              seconds=seconds, timeout_s=30))
        res["sustained"] = res["errors"] == 0 and res["per_s"] >= 0.95 * rate and res["p99_ms"] < 1000
        out[str(int(rate))] = res
        log(f"  {system.name} open loop {rate:.0f}/s: {res['per_s']}/s p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms"
            f" (steal {res['steal_pct']} %)")
        if not res["sustained"]:
            break
        await asyncio.sleep(2)  # let any backlog drain before the next rate
    return out


# ---------------------------------------------------------------------------------- ingest


async def ingest_into(bases: list[str], pids: list[int], quick: bool,
                      backing: Callable[[str], list[int]] | None = None) -> dict[str, Any]:
    """Events accepted per second by the servers at ``bases`` (POSTs spread over them in turn)."""
    out: dict[str, Any] = {}
    turn = iter(range(10**9))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:

        async def post(body: bytes) -> None:
            async with http.post(bases[next(turn) % len(bases)] + "/e/bench", data=body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"POST /e answered {r.status}")

        for label, per_post, posts in (("single", 1, 2_000 if quick else 40_000),
                                       ("batch100", 100, 100 if quick else 1_500)):
            bodies = iter([orjson.dumps([{"name": "bench/ingest", "data": {"i": i, "j": j}}
                                         for j in range(per_post)]) if per_post > 1
                           else orjson.dumps({"name": "bench/ingest", "data": {"i": i}})
                           for i in range(posts + 200)])
            await closed_loop(lambda _i, b=bodies: post(next(b)), concurrency=64, runs=200)  # warm-up

            def phase(b: Any = bodies, n: int = posts) -> Awaitable[LoadResult]:
                return closed_loop(lambda _i: post(next(b)), concurrency=64, runs=n)

            with Sampler(pids, backing=backing) as sampler:
                res = await phase()
            summary = res.summary()
            summary["events_per_s"] = round(res.throughput * per_post, 1)
            summary["events_per_post"] = per_post
            summary["engine_rss_mb_max"] = round(max(sampler.rss) / 2**20, 1)
            summary["engine_cpu_s"] = round(sampler.cpu_s, 2)
            for name, cpu_s in sampler.backing_cpu_s.items():
                summary[f"{name}_cpu_s"] = round(cpu_s, 2)
            out[label] = summary
            log(f"  ingest {label}: {summary['events_per_s']} events/s, POST p50 {summary['p50_ms']} ms p99 {summary['p99_ms']} ms")
    return out


async def scenario_ingest(quick: bool, clusters: list[type[PyngestCluster]]) -> dict[str, Any]:
    """Events accepted per second: each is durable (committed) before its POST answers. One
    SQLite process, then each scale-out system chosen."""
    port, data = free_port(), scratch_dir("ingest")
    server = Proc("pyngest", python("-m", "pyngest.server.cli", "dev", "--no-discovery", "--no-poll",
                                    "-p", str(port), "--host", "127.0.0.1", "--sqlite-dir", data,
                                    "-l", "warn"), cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(base + "/health", server)
        out = await ingest_into([base], [server.pid], quick)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    for cls in clusters:
        log(f"ingest: {cls.name}")
        system = cls()
        try:
            await system.start()
            out[cls.name] = await ingest_into([f"http://127.0.0.1:{p}" for p in system.ports], system.engine_pids(),
                                              quick, backing=system.backing_pids)
        finally:
            await system.stop()
    return out


# ------------------------------------------------------------------------------------ soak


async def scenario_soak(minutes: float, rate: float) -> dict[str, Any]:
    """Steady open-loop load of 10-step runs on pyngest (SDK app): memory and latency per minute."""
    system = PyngestSDK()
    await system.start()
    minutes_out: list[dict[str, Any]] = []
    try:
        pids = system.engine_pids()
        await closed_loop(lambda i: system.run("ten", i), concurrency=16, runs=200)
        for minute in range(int(minutes)):
            with Sampler(pids, every_s=5) as sampler:
                res = await open_loop(lambda i: system.run("ten", i), rate=rate, seconds=60, timeout_s=60)
            row = {"minute": minute + 1, **res.summary(), "engine_rss_mb": round(sampler.rss[-1] / 2**20, 1),
                   "engine_cpu_s": round(sampler.cpu_s, 1)}
            minutes_out.append(row)
            log(f"  soak minute {minute + 1}: {row['per_s']}/s p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms, "
                f"RSS {row['engine_rss_mb']} MB")
    finally:
        await system.stop()
    first, last = minutes_out[0]["engine_rss_mb"], minutes_out[-1]["engine_rss_mb"]
    return {"rate_per_s": rate, "workflow": "ten", "system": system.name, "minutes": minutes_out,
            "rss_first_minute_mb": first, "rss_last_minute_mb": last,
            "rss_growth_pct": round((last - first) / first * 100, 1)}


# ------------------------------------------------------------------------- child benchmarks


def run_child(argv: list[str], json_path: Path, timeout: float) -> dict[str, Any]:
    log(f"  $ {' '.join(argv)}")
    proc = subprocess.run(argv, cwd=ROOT, timeout=timeout, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not json_path.exists():
        return {"error": f"exit {proc.returncode}", "output": (proc.stdout + proc.stderr)[-2000:]}
    data: dict[str, Any] = json.loads(json_path.read_text())
    return data


def scenario_waits(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Matching cost in-process (bench/expr_index.py) and a real server holding the waits
    (bench/pause_server.py: its memory and the index rebuild on start)."""
    results: dict[str, Any] = {}
    for n in ([10_000] if quick else [100_000, 1_000_000]):
        match_path, server_path = out_dir / f"waits-match-{n}.json", out_dir / f"waits-server-{n}.json"
        match = run_child(python(str(BENCH_DIR / "expr_index.py"), "--pauses", str(n), "--json", str(match_path)),
                          match_path, 3600)
        server = run_child(python(str(BENCH_DIR / "pause_server.py"), "--pauses", str(n), "--json", str(server_path)),
                           server_path, 3600)
        results[str(n)] = {**match, **server}
        log(f"  {n:,} waits: {results[str(n)]}")
    return results


def scenario_flow(quick: bool, out_dir: Path) -> dict[str, Any]:
    path = out_dir / "flow.json"
    argv = python(str(BENCH_DIR / "flow_accuracy.py"), "--json", str(path))
    if quick:
        argv += ["--only", "throttle,rate_limit,priority"]
    return run_child(argv, path, 3600)


# ------------------------------------------------------------------------------------ main


def medians(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system and phase, the median of each figure across repeats."""
    out: dict[str, Any] = {}
    for rep in repeats:
        for system, phases in rep.items():
            for phase, figures in phases.items():
                slot = out.setdefault(system, {}).setdefault(phase, {})
                for key, value in figures.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        slot.setdefault(key, []).append(value)
    return {s: {ph: {k: statistics.median(v) for k, v in figs.items()} for ph, figs in phases.items()}
            for s, phases in out.items()}


def ratios(repeats: list[dict[str, Any]], ours: str) -> dict[str, Any]:
    """pyngest ÷ peer for throughput (higher is better) and p50 latency, per repeat, then the median."""
    per: dict[str, dict[str, list[float]]] = {}
    for rep in repeats:
        if ours not in rep:
            continue
        for peer, phases in rep.items():
            if peer == ours:
                continue
            for phase in ("one_c64", "ten_c64", "one_c1", "ten_c1"):
                a, b = rep[ours].get(phase), phases.get(phase)
                if not a or not b:
                    continue
                slot = per.setdefault(peer, {})
                if b.get("per_s"):
                    slot.setdefault(f"{phase}_throughput", []).append(a["per_s"] / b["per_s"])
                if b.get("p50_ms"):
                    slot.setdefault(f"{phase}_p50_latency", []).append(a["p50_ms"] / b["p50_ms"])
    return {peer: {k: round(statistics.median(v), 3) for k, v in figs.items()} for peer, figs in per.items()}


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    systems = all_systems()
    chosen_systems = [s for s in args.systems.split(",") if s] or list(systems)
    unknown = [s for s in chosen_systems if s not in systems]
    if unknown:
        raise SystemExit(f"unknown or unavailable system(s): {', '.join(unknown)}; have {', '.join(systems)}")
    scenarios = [s for s in args.only.split(",") if s] or ["ingest", "runs", "open", "waits", "flow", "soak"]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = RESULTS / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": stamp, "machine": machine(), "calibration_before": calibration(),
                               "argv": sys.argv[1:],
                               "quick": args.quick, "systems": {}, "scenarios": {}}
    path = out_dir / "results.json"

    def save() -> None:
        path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))

    if "ingest" in scenarios:
        log("ingest")
        clusters: list[type[PyngestCluster]] = [cls for cls in (PyngestPG1, PyngestPG2, PyngestPG3)
                                                if cls.name in chosen_systems]
        results["scenarios"]["ingest"] = await scenario_ingest(args.quick, clusters)
        save()
    if "runs" in scenarios:
        repeats: list[dict[str, Any]] = []
        for r in range(args.repeat):
            rep: dict[str, Any] = {}
            for name in chosen_systems:
                log(f"runs, repeat {r + 1}/{args.repeat}: {name}")
                system = systems[name]()
                try:
                    await system.start()
                    results["systems"][name] = {"label": system.label, **system.describe()}
                    rep[name] = await scenario_runs(system, args.quick)
                except Exception as exc:  # noqa: BLE001 - one failing peer must not lose the others' figures
                    log(f"  {name} failed: {type(exc).__name__}: {exc}")
                    rep[name] = {"error": {"message": f"{type(exc).__name__}: {exc}"[:2000]}}
                finally:
                    await system.stop()
                await asyncio.sleep(1)
            repeats.append(rep)
            results["scenarios"]["runs"] = {"repeats": repeats}
            save()
        results["scenarios"]["runs"]["median"] = medians(repeats)
        results["scenarios"]["runs"]["ratios_pyngest_sdk"] = ratios(repeats, PyngestSDK.name)
        results["scenarios"]["runs"]["ratios_pyngest_raw"] = ratios(repeats, PyngestRaw.name)
        save()
    if "open" in scenarios:
        rates = [float(x) for x in args.rates.split(",")]
        out: dict[str, Any] = {}
        for name in [s for s in chosen_systems if s.startswith("pyngest")]:
            log(f"open loop: {name}")
            system = systems[name]()
            try:
                await system.start()
                out[name] = await scenario_open(system, rates, args.quick)
            finally:
                await system.stop()
            results["scenarios"]["open"] = out
            save()
    if "waits" in scenarios:
        log("waits")
        results["scenarios"]["waits"] = scenario_waits(args.quick, out_dir)
        save()
    if "flow" in scenarios:
        log("flow control accuracy")
        results["scenarios"]["flow"] = scenario_flow(args.quick, out_dir)
        save()
    if "soak" in scenarios:
        log("soak")
        results["scenarios"]["soak"] = await scenario_soak(1 if args.quick else args.soak_minutes, args.soak_rate)
        save()
    results["finished"] = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results["calibration_after"] = calibration()
    save()
    log(f"results: {path.relative_to(ROOT)}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks every scenario runs")
    parser.add_argument("--only", default="", help="scenarios: ingest,runs,open,waits,flow,soak")
    parser.add_argument("--systems", default="", help="systems for runs/open (default: all available)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the runs scenario")
    parser.add_argument("--rates", default="400,600,800,1000,1200,1500", help="open-loop arrival rates (1-step runs/s)")
    parser.add_argument("--soak-minutes", type=float, default=10)
    parser.add_argument("--soak-rate", type=float, default=50, help="10-step runs started per second in the soak")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
        args.rates = "200"
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
