"""Turn a results file of ``bench.run`` into the tables and plots of docs/benchmarks.md.

    .venv/bin/python -m bench.report [bench/results/<time>/results.json ...]   # default: the newest

With several results files, each scenario is taken from the last file that has it (so a run
of ``--only runs`` can replace that scenario of an earlier full run); the page says which run
each scenario comes from.

Writes PNG plots to ``docs/benchmarks/`` and replaces the part of ``docs/benchmarks.md``
between ``<!-- results:start -->`` and ``<!-- results:end -->`` with tables of the figures;
the prose around it is written by hand.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.harness.procs import BENCH_DIR, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ["pyngest-raw", "pyngest-sdk", "pyngest-sdk-fsync", "pyngest-inngest-sdk", "restate", "dbos", "floor"]


def newest() -> Path:
    files = sorted((BENCH_DIR / "results").glob("*/results.json"))
    if not files:
        raise SystemExit("no results yet: run python -m bench.run first")
    return files[-1]


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ordered(names: Any) -> list[str]:
    names = list(names)
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def section_runs(res: dict[str, Any]) -> list[str]:
    runs = res["scenarios"].get("runs")
    if not runs:
        return []
    med = runs["median"]
    labels = {k: v.get("label", k) for k, v in res["systems"].items()}
    out = [f"### Runs: the same two workflows on every system (median of {len(runs['repeats'])} repeats)", ""]
    rows = []
    for name in ordered(med):
        m = med[name]
        if "one_c64" not in m:
            continue
        rows.append([labels.get(name, name),
                     fmt(m["one_c64"]["per_s"], 0), fmt(m["ten_c64"]["per_s"], 0),
                     fmt(m["one_c1"]["p50_ms"], 2), fmt(m["one_c1"]["p99_ms"], 2),
                     fmt(m["ten_c1"]["p50_ms"], 2), fmt(m["ten_c1"]["p99_ms"], 2),
                     fmt(m["ten_c64"].get("engine_cpu_ms_per_run"), 2),
                     fmt(m["ten_c64"].get("app_cpu_ms_per_run"), 2),
                     fmt(m["ten_c64"].get("engine_rss_mb_max"), 0)])
    out.append(table(["system", "1-step runs/s (64 in flight)", "10-step runs/s (64 in flight)",
                      "1-step p50 ms (one at a time)", "1-step p99 ms", "10-step p50 ms (one at a time)",
                      "10-step p99 ms", "engine CPU ms per 10-step run", "app CPU ms per 10-step run",
                      "engine RSS MB (max)"], rows))
    errors = [f"- {labels.get(n, n)}: {rep[n]['error']['message']}"
              for rep in runs["repeats"] for n in rep if "error" in rep[n]]
    if errors:
        out += ["", "Failures during the runs:", "", *sorted(set(errors))]
    raw = med.get("pyngest-raw", {})
    if "step_overhead_c1" in raw:
        out += ["", "pyngest's server overhead per step (a step's result leaving the app → the next "
                "request of that run arriving at the app, loopback HTTP both ways included; scripted app):", "",
                table(["runs in flight", "p50 ms", "p99 ms", "samples"],
                      [["1", fmt(raw["step_overhead_c1"]["p50_ms"], 3), fmt(raw["step_overhead_c1"]["p99_ms"], 3),
                        fmt(int(raw["step_overhead_c1"]["samples"]))],
                       ["64", fmt(raw["step_overhead_c64"]["p50_ms"], 3), fmt(raw["step_overhead_c64"]["p99_ms"], 3),
                        fmt(int(raw["step_overhead_c64"]["samples"]))]])]
    for ours in ("pyngest_sdk", "pyngest_raw"):
        ratios = runs.get(f"ratios_{ours}") or {}
        if not ratios:
            continue
        who = "pyngest + pyngest SDK" if ours == "pyngest_sdk" else "pyngest (scripted app)"
        out += ["", f"Ratios {who} ÷ peer, within each repeat, median (throughput: above 1 is better for "
                "pyngest; latency: below 1 is better):", ""]
        rows = []
        for peer in ordered(ratios):
            r = ratios[peer]
            rows.append([labels.get(peer, peer), fmt(r.get("one_c64_throughput"), 2), fmt(r.get("ten_c64_throughput"), 2),
                         fmt(r.get("one_c1_p50_latency"), 2), fmt(r.get("ten_c1_p50_latency"), 2)])
        out.append(table(["peer", "1-step throughput", "10-step throughput", "1-step p50 latency",
                          "10-step p50 latency"], rows))
    return out


def section_ingest(res: dict[str, Any]) -> list[str]:
    ing = res["scenarios"].get("ingest")
    if not ing:
        return []
    rows = [[label, fmt(v["events_per_s"], 0), fmt(v["p50_ms"], 2), fmt(v["p99_ms"], 2), fmt(v["engine_rss_mb_max"], 0)]
            for label, v in (("single events", ing["single"]), ("batches of 100", ing["batch100"]))]
    return ["### Ingest: `POST /e` with 64 connections", "",
            table(["body", "events/s", "POST p50 ms", "POST p99 ms", "server RSS MB"], rows)]


def section_open(res: dict[str, Any]) -> list[str]:
    op = res["scenarios"].get("open")
    if not op:
        return []
    labels = {k: v.get("label", k) for k, v in res["systems"].items()}
    rows = []
    for name in ordered(op):
        for rate, v in op[name].items():
            rows.append([labels.get(name, name), rate, fmt(v["per_s"], 0), fmt(v["p50_ms"], 2), fmt(v["p99_ms"], 2),
                         "yes" if v.get("sustained") else "no"])
    return ["### Open loop: 1-step runs arriving at a fixed rate", "",
            table(["system", "offered runs/s", "completed runs/s", "p50 ms", "p99 ms", "sustained"], rows)]


def section_waits(res: dict[str, Any]) -> list[str]:
    waits = res["scenarios"].get("waits")
    if not waits:
        return []
    rows = []
    for n, v in waits.items():
        if "error" in v:
            rows.append([f"{int(n):,}", v["error"], "", "", "", ""])
            continue
        rows.append([f"{int(n):,}", fmt(v.get("match_p50_us"), 1), fmt(v.get("match_p99_us"), 1),
                     fmt(v.get("match_cpu_p99_us"), 1), fmt(v.get("add_wait_p50_us"), 1),
                     fmt(v.get("rebuild_s"), 2), fmt(v.get("server_rss_mb"), 0), fmt(v.get("empty_server_rss_mb"), 0)])
    return ["### Waits: pending `waitForEvent` pauses on one event name", "",
            table(["pending waits", "match p50 µs", "match p99 µs", "match p99 µs (CPU time)",
                   "add a wait p50 µs", "index rebuild on start s", "server RSS MB", "empty server RSS MB"], rows)]


def section_flow(res: dict[str, Any]) -> list[str]:
    flow = res["scenarios"].get("flow")
    if not flow:
        return []
    if "error" in flow:
        return ["### Flow control accuracy", "", f"failed: {flow['error']}"]
    picks = {
        "concurrency": ["violations", "steps"],
        "throttle": ["rate_error_pct", "max_per_window", "max_per_window_allowed", "max_at_once"],
        "rate_limit": ["max_in_any_period", "limit"],
        "debounce": ["runs_per_key_min", "runs_per_key_max", "wrong_event_or_time"],
        "batching": ["max_batch_size", "max_size", "events_missing", "lateness_ms_p50", "lateness_ms_max"],
        "batching_quiet": ["max_batch_size", "events_missing", "lateness_ms_p50", "lateness_ms_max"],
        "priority": ["inversions"],
        "restart": ["idempotent_runs_after_restart", "singleton_runs_after_restart"],
        "kill9": ["idempotent_runs_after_kill", "singleton_runs_after_kill"],
    }
    rows = []
    for scen, keys in picks.items():
        if scen in flow:
            rows.append([scen, ", ".join(f"{k} {fmt(flow[scen].get(k))}" for k in keys if k in flow[scen])])
    return ["### Flow control accuracy (`bench/flow_accuracy.py`; goals in docs/flow-control.md)", "",
            table(["scenario", "figures"], rows)]


def section_soak(res: dict[str, Any]) -> list[str]:
    soak = res["scenarios"].get("soak")
    if not soak:
        return []
    rows = [[str(m["minute"]), fmt(m["per_s"], 1), fmt(m["p50_ms"], 2), fmt(m["p99_ms"], 2), fmt(m["engine_rss_mb"], 1)]
            for m in soak["minutes"]]
    return [f"### Soak: {soak['rate_per_s']:.0f} ten-step runs/s for {len(soak['minutes'])} minutes "
            f"({soak['system']})", "",
            f"Server RSS after the first minute {soak['rss_first_minute_mb']} MB, at the end "
            f"{soak['rss_last_minute_mb']} MB ({soak['rss_growth_pct']:+.1f} %; goal: within 10 %).", "",
            table(["minute", "runs/s", "p50 ms", "p99 ms", "server RSS MB"], rows)]


def plots(res: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    labels = {k: v.get("label", k) for k, v in res["systems"].items()}
    runs = res["scenarios"].get("runs")
    if runs:
        med = runs["median"]
        names = [n for n in ordered(med) if "one_c64" in med[n]]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
        for ax, phase, title in ((axes[0], "one_c64", "1-step runs/s"), (axes[1], "ten_c64", "10-step runs/s")):
            values = [med[n][phase]["per_s"] for n in names]
            ax.barh([labels.get(n, n) for n in names], values, color="#4c72b0")
            ax.set_title(f"{title}, 64 in flight")
            ax.set_xlim(0, max(values) * 1.15)
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
        axes[0].invert_yaxis()
        fig.suptitle("throughput (higher is better)", fontsize=10)
        fig.tight_layout()
        fig.savefig(PLOTS / "throughput.png", dpi=110)
        plt.close(fig)
        made.append("throughput.png")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, phase, title in ((axes[0], "one_c1", "1-step run"), (axes[1], "ten_c1", "10-step run")):
            for n in names:
                samples = sorted(v for rep in runs["repeats"] if phase in rep.get(n, {})
                                 for v in rep[n][phase].get("latency_sample_ms", []))
                if samples:
                    ys = [(k + 1) / len(samples) for k in range(len(samples))]
                    ax.plot(samples, ys, label=labels.get(n, n))
            ax.set_xscale("log")
            ax.set_xlabel("ms from trigger to completion (log)")
            ax.set_ylabel("fraction of runs")
            ax.set_title(f"{title}, one at a time")
            ax.grid(True, alpha=0.3)
        axes[1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(PLOTS / "latency.png", dpi=110)
        plt.close(fig)
        made.append("latency.png")
    op = res["scenarios"].get("open")
    if op:
        fig, ax = plt.subplots(figsize=(6, 4))
        for n in ordered(op):
            rates = [float(r) for r in op[n]]
            (line,) = ax.plot(rates, [op[n][r]["p50_ms"] for r in op[n]], marker="o", label=f"{labels.get(n, n)} p50")
            ax.plot(rates, [op[n][r]["p99_ms"] for r in op[n]], marker="x", linestyle="--", color=line.get_color(),
                    label=f"{labels.get(n, n)} p99")
        ax.set_yscale("log")
        ax.set_xlabel("1-step runs arriving per second")
        ax.set_ylabel("ms from arrival to completion (log)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(PLOTS / "open-loop.png", dpi=110)
        plt.close(fig)
        made.append("open-loop.png")
    soak = res["scenarios"].get("soak")
    if soak:
        fig, ax = plt.subplots(figsize=(6, 4))
        minutes = [m["minute"] for m in soak["minutes"]]
        ax.plot(minutes, [m["engine_rss_mb"] for m in soak["minutes"]], marker="o", color="#4c72b0")
        ax.set_xlabel("minute")
        ax.set_ylabel("server RSS MB", color="#4c72b0")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(minutes, [m["p99_ms"] for m in soak["minutes"]], marker="x", color="#dd8452")
        ax2.set_ylabel("p99 ms", color="#dd8452")
        ax2.set_ylim(bottom=0)
        ax.set_title("soak: memory and p99 latency per minute")
        fig.tight_layout()
        fig.savefig(PLOTS / "soak.png", dpi=110)
        plt.close(fig)
        made.append("soak.png")
    return made


def header(res: dict[str, Any]) -> list[str]:
    m = res["machine"]
    parts = [f"Run `{res['started']}` (`python -m bench.run {' '.join(res['argv'])}`), commit `{m.get('commit')}`: "
             f"{m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('memory')}, Python {m.get('python')}, "
             f"{m.get('platform')}; load average before the run {', '.join(f'{x:.2f}' for x in m.get('load_before', []))}; "
             f"scenarios: {', '.join(res['scenarios'])}.",
             ""]
    for when in ("before", "after"):
        cal = res.get(f"calibration_{when}")
        if cal:
            parts += [f"Machine speed {when} the run: a 2M-iteration Python loop {cal['python_loop_ms']} ms; "
                      f"loopback TCP ping-pong between two threads p50 {cal['loopback_rtt_p50_us']} µs, "
                      f"p99 {cal['loopback_rtt_p99_us']} µs.", ""]
    return parts


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Scenarios (and the systems they ran) from the last run that has each."""
    merged: dict[str, Any] = {"scenarios": {}, "systems": {}, "sources": []}
    for res in runs:
        merged["scenarios"].update(res["scenarios"])
        merged["systems"].update(res.get("systems", {}))
    for res in runs:
        mine = [name for name in res["scenarios"] if merged["scenarios"][name] is res["scenarios"][name]]
        if mine:
            merged["sources"].append({**res, "scenarios": {name: res["scenarios"][name] for name in mine}})
    return merged


def render(res: dict[str, Any]) -> str:
    parts: list[str] = []
    for source in res["sources"]:
        parts += header(source)
    systems = res.get("systems", {})
    if systems:
        parts += ["Systems and versions:", ""]
        for name in ordered(systems):
            info = {k: v for k, v in systems[name].items() if k != "label"}
            parts.append(f"- **{systems[name].get('label', name)}**: " + "; ".join(f"{k} {v}" for k, v in info.items()))
        parts.append("")
    for section in (section_ingest, section_runs, section_open, section_waits, section_flow, section_soak):
        lines = section(res)
        if lines:
            parts += [*lines, ""]
    for png in plots(res):
        parts.append(f"![{png[:-4]}](benchmarks/{png})")
    parts.append("")
    return "\n".join(parts)


def main() -> None:
    sources = [Path(a) for a in sys.argv[1:]] or [newest()]
    res = merge([json.loads(p.read_text()) for p in sources])
    body = render(res)
    doc = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {START} ... {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{body}\n{END}{tail}")
    print(f"wrote {DOC.relative_to(ROOT)} and {PLOTS.relative_to(ROOT)}/ from {', '.join(map(str, sources))}")


if __name__ == "__main__":
    main()
