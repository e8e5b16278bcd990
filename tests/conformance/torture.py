"""The torture test (issue 13): runs of every kind at once while the server is SIGKILLed at
random moments and restarted on the same data, and three apps misbehave on the wire.

In flight, on one ``pyngest dev`` server (SQLite, or PostgreSQL + Redis with
``PYNGEST_TEST_BACKEND=postgres``), from two healthy apps (the official Python SDK and pyngest's):

- ``crash-ten``: ten steps each sleeping up to a second (test_crash.py's rules are checked:
  no step body runs again once its output was stored, no stored output is lost or replaced);
- ``crash-mixed``: concurrency-limited, a step, a sleep and a ``waitForEvent`` answered by the
  test (the limit must hold, the reply must arrive, the first step's output must be the kept one);
- ``torture-retry``: throttled, a step that fails on its first attempt and is retried;
- ``torture-debounce``: bursts of three events per key, debounced: one run per burst, with its
  last event;

and from three faulty apps (``faulty_apps.py``), each with one function retried once:
a hung app (the server gives up at its ``--step-timeout``), one answering garbage and one
resetting connections. Their runs must fail, after exactly attempts 0 and 1 were sent.

Every acknowledged event must have started its run (nothing accepted is lost), and every run
of the healthy apps must complete with the right output.

``torture()`` is shared by the test (a short version) and ``python -m bench.torture`` (the full
one: 1,000 runs, 20 kills).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apps.common import CRASH_MIXED_LIMIT
from .faulty_apps import MODES, FaultyApps
from .harness import TERMINAL, Api, App, Server, poll
from .test_cluster_crash import _check_mixed
from .test_crash import _send_batch, _verify

KINDS = ("py_fastapi", "pyngest_fastapi")
HEALTHY = ("crash-ten", "crash-mixed", "torture-retry", "torture-debounce")
STEP_TIMEOUT_S = 8  # the hung app's requests fail after this (the healthy apps answer in ~1 s)
FAULTY_RETRIES = 1
FIRST_SHARE = 0.6  # of each kind's events, sent before the first kill; the rest after restarts


@dataclass
class Workload:
    """The events of one function of one app: sent in chunks, then checked."""

    label: str  # "<app kind>:<fn>" or "faulty:<mode>"
    event: str  # the triggering event's name
    tags: list[str]
    sent: dict[str, str] = field(default_factory=dict)  # tracked event id -> tag
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)  # tracked event id -> its ended run

    def chunks(self, count: int) -> list[list[str]]:
        first = int(len(self.tags) * FIRST_SHARE)
        rest = self.tags[first:]
        step = -(-len(rest) // count) if count else len(rest)
        return [self.tags[:first]] + [rest[i * step:(i + 1) * step] for i in range(count)]


def plan(runs: int) -> tuple[dict[str, int], int]:
    """Runs per healthy app for each function, and faulty runs in all (the rest of ``runs``)."""
    per_app = {"crash-ten": runs * 3 // 20, "crash-mixed": runs * 3 // 40, "torture-retry": runs // 10,
               "torture-debounce": runs // 20}
    return per_app, runs - len(KINDS) * sum(per_app.values())


@dataclass
class Figures:
    runs: int
    kills: int
    seconds: float
    restarts_s: list[float]
    summaries: list[str]

    def __str__(self) -> str:
        return (f"{self.runs} runs, {self.kills} SIGKILLs (restart median {statistics.median(self.restarts_s):.1f} s, "
                f"max {max(self.restarts_s):.1f} s), all ended {self.seconds:.0f} s after the first event; "
                + "; ".join(self.summaries))


def _send(api: Api, work: Workload, tags: list[str]) -> None:
    if not tags:
        return
    if work.label.endswith("torture-debounce"):  # a burst of three per key, one POST: the last one counts
        res = api.send_raw([{"name": work.event, "data": {"tag": t, "n": n}} for n in range(3) for t in tags])
        assert res.status_code == 200, res.text
        ids = res.json()["ids"]
        work.sent |= dict(zip(ids[-len(tags):], tags, strict=True))
        return
    work.sent |= dict(zip(_send_batch(api, tags, work.event), tags, strict=True))


class Replier:
    """Answers each ``crash-mixed`` run waiting for its reply (again every few seconds until the
    run is past its wait: a reply sent before the wait was stored does not count)."""

    def __init__(self, api: Api, apps: list[App]) -> None:
        self.api, self.apps = api, apps
        self.replied: dict[tuple[str, str], float] = {}

    def tick(self) -> None:
        for app in self.apps:
            past = {e["tag"] for e in app.observations(kind="step", fn="crash-mixed", step="last")}
            for entry in app.observations(kind="waiting", fn="crash-mixed"):
                key = (app.kind, entry["tag"])
                if entry["tag"] in past or time.monotonic() - self.replied.get(key, -1e9) < 3:
                    continue
                res = self.api.send_raw({"name": app.event("crash-mixed.reply"), "data": {"tag": entry["tag"]}})
                if res.status_code == 200:
                    self.replied[key] = time.monotonic()


def torture(workdir: Path, runs: int, kills: int, seed: int, log: Callable[[str], None] = print) -> Figures:
    rng = random.Random(seed)
    context = f"(seed {seed})"
    per_app, faulty_runs = plan(runs)
    server = Server(workdir / "server", extra_args=["--step-timeout", str(STEP_TIMEOUT_S)])
    server.workdir.mkdir(parents=True)
    server.start()
    apps = [App(kind, workdir, server.url) for kind in KINDS]
    faulty = FaultyApps()
    try:
        faulty.start()
        for app in apps:
            app.start()
            error = app.sync_error()
            assert error is None, error
        faulty_events = faulty.register(server.url, FAULTY_RETRIES)
        api = server.api()
        work = [Workload(f"{app.kind}:{fn}", app.event(fn), [f"{fn}-{i}" for i in range(n)])
                for app in apps for fn, n in per_app.items()]
        work += [Workload(f"faulty:{mode}", faulty_events[mode],
                          [f"{mode}-{i}" for i in range(faulty_runs // len(MODES) + (i < faulty_runs % len(MODES)))])
                 for i, mode in enumerate(MODES)]
        chunks = {w.label: w.chunks(kills) for w in work}
        replier = Replier(api, apps)

        started = time.monotonic()
        for w in work:
            _send(api, w, chunks[w.label][0])
        kill_times: list[tuple[float, float]] = []
        restarts: list[float] = []
        for kill in range(kills):
            deadline = time.monotonic() + rng.uniform(0.5, 3.0)  # a random moment is the point
            while time.monotonic() < deadline:
                replier.tick()
                time.sleep(0.2)
            killed_at = time.time()
            server.kill9()
            kill_times.append((killed_at, time.time()))
            began = time.monotonic()
            server.start()
            restarts.append(time.monotonic() - began)
            for w in work:  # events acknowledged between crashes must start runs too
                _send(api, w, chunks[w.label][kill + 1])
        log(f"torture {context}: {kills} kills done after {time.monotonic() - started:.0f} s; waiting for every run")

        def all_ended() -> bool:
            replier.tick()
            for w in work:
                for event_id in [e for e in w.sent if e not in w.ended]:
                    found = api.event_runs(event_id)
                    if found and all(r["status"] in TERMINAL for r in found):
                        assert len(found) == 1, f"{w.label}: event {event_id} started {len(found)} runs {context}"
                        w.ended[event_id] = found[0]
                        healthy = not w.label.startswith("faulty:")
                        assert not healthy or found[0]["status"] == "Completed", (w.label, found[0], context)
            return all(len(w.ended) == len(w.sent) == len(w.tags) for w in work)

        poll(all_ended, timeout=900, interval=1, what=f"every run to end {context}")
        seconds = time.monotonic() - started
        violations, summaries = _check(apps, faulty, work, api, kill_times)
        assert not violations, f"{len(violations)} violations {context}:\n" + "\n".join(violations[:40])
        return Figures(sum(len(w.ended) for w in work), kills, seconds, restarts, summaries)
    finally:
        for app in apps:
            app.stop()
        server.stop()
        faulty.stop()


def _check(apps: list[App], faulty: FaultyApps, work: list[Workload], api: Api,
           kills: list[tuple[float, float]]) -> tuple[list[str], list[str]]:
    """The rules of the module docstring, over what the apps logged and the runs' outputs."""
    violations: list[str] = []
    summaries: list[str] = []
    by_label = {w.label: w for w in work}
    for app in apps:
        found, summary = _verify(app, api, by_label[f"{app.kind}:crash-ten"].sent, kills)
        violations += found
        summaries.append(summary)
        mixed = by_label[f"{app.kind}:crash-mixed"]
        tokens = {}
        for event_id, run in mixed.ended.items():
            if run["output"].get("reply") != {"tag": mixed.sent[event_id]}:
                violations.append(f"{app.kind}: crash-mixed {mixed.sent[event_id]} got reply {run['output']}")
            tokens[run["run_id"]] = run["output"]["token"]
        violations += _check_mixed(app, tokens)
        peak = max((e["in_flight"] for e in app.observations(kind="enter", fn="crash-mixed")), default=0)
        if peak > CRASH_MIXED_LIMIT:
            violations.append(f"{app.kind}: {peak} crash-mixed requests at once, limit {CRASH_MIXED_LIMIT}")
        retry = by_label[f"{app.kind}:torture-retry"]
        tokens = {run["run_id"]: run["output"]["token"] for run in retry.ended.values()}
        violations += _check_mixed(app, tokens, fn="torture-retry")
        violations += [f"{app.kind}: torture-retry {retry.sent[e]} succeeded at attempt {r['output']['attempt']}"
                       for e, r in retry.ended.items() if r["output"]["attempt"] < 1]
        debounce = by_label[f"{app.kind}:torture-debounce"]
        violations += [f"{app.kind}: debounced burst {debounce.sent[e]} ran with {r['output']}"
                       for e, r in debounce.ended.items() if r["output"] != {"tag": debounce.sent[e], "n": 2}]
        summaries.append(f"{app.kind}: crash-mixed peak {peak} at once (limit {CRASH_MIXED_LIMIT})")
    for mode, app in faulty.apps.items():
        attempts = app.attempts()
        w = by_label[f"faulty:{mode}"]
        for run in w.ended.values():
            if run["status"] != "Failed":
                violations.append(f"{mode} app: run {run['run_id']} ended {run['status']}, not Failed")
            seen = attempts.get(run["run_id"], set())
            if seen != set(range(FAULTY_RETRIES + 1)):
                violations.append(f"{mode} app: run {run['run_id']} was sent attempts {sorted(seen)}")
        summaries.append(f"{mode} app: {len(w.ended)} runs failed after {FAULTY_RETRIES + 1} attempts, "
                         f"{len(app.requests)} requests")
    return violations, summaries
