"""Crash test: hundreds of runs of a 10-step function in flight while the server is killed with
SIGKILL at random moments and restarted on the same port and data directory. The runs belong
to three apps synced to the one server, one per way of running steps: the official Python SDK
(``py_fastapi``), pyngest's own (``pyngest_fastapi``), and the npm SDK with checkpointing
(``js``); each kill lands on runs of all three.

What must hold afterwards:

- every event acknowledged by ``POST /e`` started exactly one run, and every run completed;
- each step body ran exactly once *after its output was stored*. A body may run again if the
  server died before storing its output (the SDK's answer was lost), but once the server has
  stored an output it must never run that step again, nor hand back a different output.

How the app makes that visible (``crash-ten`` in ``apps/functions_async.py`` and
``js/app.mjs``): every execution of step ``k`` logs a fresh nonce, which is also the step's
return value, and the nonces of steps ``0..k-1`` as the function holds them. For each run, with
``N_k`` the nonce in the run's final output:

1. no execution of step ``k`` begins after the log shows ``N_k`` stored (a checkpoint of it
   accepted, or the server handing it back to a later step or the function's end) — such an
   execution ran a step whose output was already stored and kept. One that began before may
   (a request made before the output was stored, answered late);
2. every observation of step ``k``'s output (in later steps, and in the function's end) is
   ``N_k`` — a different one means the server handed out an output and then lost or replaced it.

Why an observed output is a stored one depends on the SDK:

- **Python** (both SDKs) runs one step per request and returns its output to the server; the
  outputs a step sees are the memoized state the server sent.
- **JS** runs the whole function in one request (checkpointing): after each step it POSTs the
  output to ``/v1/checkpoint/{run}/async`` and runs the next step's body only once that
  answered 2xx, which the server sends only after storing it. The function's own code between
  steps runs meanwhile, though: after the last step the function returns (and logs its end)
  while that step's checkpoint is still in flight. So a call's *own* output counts as an
  observation only once a checkpoint of it was accepted; outputs memoized from the server
  always count. A call orphaned by a crash keeps running in the app; it must get **409**
  (stale dispatch) on its next checkpoint and stop there. The app logs each checkpoint
  attempt and each request's generation, and two more rules are checked:

3. no checkpoint sent after a kill by a dispatch of the killed server was accepted;
4. a call ran step ``k+1`` after executing step ``k`` only once a checkpoint of step ``k``
   for its dispatch was accepted (the SDK's side of rule 2).

- **pyngest** checkpoints too (``docs/sdk.md``), but replays the function from the top after
  each stored step, so every output a step sees was stored before that step's body began. Its
  last step is not checkpointed: it rides with the function's return in the request's answer,
  so the function's end sees that one output before the server stores it, and that single
  observation does not count (``last_rides_along``).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from .harness import Api, App, Server, poll

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

# One app per way of running steps (official Python, pyngest, npm with checkpointing), all
# on one server at once.
CRASH_KINDS = ("py_fastapi", "pyngest_fastapi", "js")

INITIAL_RUNS = 200
RUNS_PER_RESTART = 10
KILLS = 5
STEPS = 10
STEP_SLEEP_S = 0.5  # mean; each step body sleeps uniform [0, 1] s


def _send_batch(api: Api, tags: list[str], name: str) -> list[str]:
    res = api.send_raw(
        [{"name": name, "data": {"tag": t, "step_sleep_s": STEP_SLEEP_S}} for t in tags]
    )
    assert res.status_code == 200, res.text
    ids = res.json()["ids"]
    assert len(ids) == len(tags)
    return [str(i) for i in ids]


def check_exactly_once_after_stored(
    entries: list[dict[str, Any]], finals: dict[str, list[str]], *, checkpointing: bool = False,
    last_rides_along: bool = False,
) -> tuple[list[str], int]:
    """Check rules 1 and 2 of the module docstring over the app's log (in write order).

    ``finals`` maps run id → the nonces in its final output. With ``checkpointing`` (JS) the
    log's checkpoint lines tell which of a call's own outputs the server had accepted when a
    line was written; the others are not observations of a stored output. Returns the
    violations found and how many step executions were repeats (allowed only before the output
    was stored)."""
    violations: list[str] = []
    executions: dict[tuple[str, int], list[int]] = defaultdict(list)  # (run, step) -> log indexes
    producer: dict[str, tuple[str, int, int]] = {}  # nonce -> (run, step, log index)
    accepted: set[tuple[str, Any, str]] = set()  # (run, generation, step name), so far
    own: dict[tuple[str, int], Any] = {}  # (call, step) -> generation: steps a call executed
    made_by: dict[tuple[str, Any, str], str] = {}  # (run, generation, step name) -> its nonce
    stored_at: dict[str, int] = {}  # nonce -> first log index showing the server had stored it
    for index, entry in enumerate(entries):
        if entry["kind"] == "checkpoint":
            if entry["outcome"] == "ok":
                for s in entry["steps"]:
                    accepted.add((entry["run_id"], entry["generation"], s))
                    nonce = made_by.get((entry["run_id"], entry["generation"], s))
                    if nonce is not None:
                        stored_at.setdefault(nonce, index)
            continue
        run_id = entry["run_id"]
        final = finals.get(run_id)
        if final is None:
            violations.append(
                f"log line {index}: run {run_id} is not one of the runs of the events sent"
            )
            continue
        seen = entry["seen"]
        if entry["kind"] == "step":
            k = entry["index"]
            executions[(run_id, k)].append(index)
            producer[entry["nonce"]] = (run_id, k, index)
            own[(entry.get("call"), k)] = entry.get("generation")
            made_by[(run_id, entry.get("generation"), f"s{k}")] = entry["nonce"]
            if len(seen) != k:
                violations.append(
                    f"log line {index}: step {k} of {run_id} saw {len(seen)} earlier outputs"
                )
        for i, observed in enumerate(seen):
            mine = (entry.get("call"), i)
            if checkpointing and mine in own and (run_id, own[mine], f"s{i}") not in accepted:
                continue  # the call's own output, which the server has not accepted (yet)
            if last_rides_along and entry["kind"] == "body-end" and i == len(seen) - 1:
                continue  # the last step's output, on its way to the server with the return
            stored_at.setdefault(observed, index)  # handed back by the server: stored by now
            if observed != final[i]:
                violations.append(
                    f"log line {index}: run {run_id} was handed output {observed} for step {i}, "
                    f"but its final output says {final[i]} (a stored output was lost or replaced)"
                )

    repeats = 0
    for run_id, final in finals.items():
        if len(final) != STEPS:
            violations.append(f"run {run_id}: final output has {len(final)} nonces")
            continue
        for k, nonce in enumerate(final):
            runs = executions.get((run_id, k), [])
            repeats += max(0, len(runs) - 1)
            made = producer.get(nonce)
            if made is None or made[:2] != (run_id, k):
                violations.append(
                    f"run {run_id} step {k}: output {nonce} was not produced by that step"
                )
                continue
            # An execution that began before the output was stored may run (a request made
            # before it, e.g. by a process whose lease was about to lapse); one after may not.
            stored = stored_at.get(nonce, made[2])
            later = [i for i in runs if i > stored]
            if later:
                violations.append(
                    f"run {run_id} step {k}: body ran again at log lines {later} after the "
                    f"execution (line {made[2]}) whose output the server stored (known stored at line {stored})"
                )
    return violations, repeats


def check_checkpoints(entries: list[dict[str, Any]], kills: list[tuple[float, float]]) -> list[str]:
    """Rules 3 and 4 of the module docstring over the JS app's log (in write order).

    ``kills`` holds, per kill, the time SIGKILL was sent and the time the process was gone."""
    violations: list[str] = []
    steps = [e for e in entries if e["kind"] == "step"]
    checkpoints = [(i, e) for i, e in enumerate(entries) if e["kind"] == "checkpoint"]
    missing = [e for e in steps if e.get("generation") is None]
    if missing:
        return [f"{len(missing)} step lines carry no generation, e.g. {missing[0]}"]

    # 3. A dispatch that logged anything before a kill was sent by the killed server (or an
    # earlier one): none of its checkpoints sent once that process was gone may be accepted.
    for n, (killed_at, gone_at) in enumerate(kills, 1):
        old = {e["generation"] for e in steps if e["t"] < killed_at}
        old |= {e["generation"] for _, e in checkpoints if e["sent"] < killed_at}
        for index, e in checkpoints:
            if e["generation"] in old and e["sent"] > gone_at and e["outcome"] == "ok":
                violations.append(
                    f"log line {index}: checkpoint of {e['steps']} for run {e['run_id']} by "
                    f"dispatch {e['generation']} (of the server killed at {killed_at:.3f}, kill "
                    f"{n}) was sent at {e['sent']:.3f}, after that server was gone, and accepted"
                )

    # 4. Within one call, the step after an executed step starts only after an accepted
    # checkpoint of it for the same dispatch.
    accepted: dict[tuple[str, Any, str], int] = {}
    for index, e in checkpoints:
        if e["outcome"] == "ok":
            for step in e["steps"]:
                accepted.setdefault((e["run_id"], e["generation"], step), index)
    by_call: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for index, e in enumerate(entries):
        if e["kind"] == "step":
            by_call[e["call"]].append((index, e))
    for lines in by_call.values():
        for (_, prev), (index, nxt) in zip(lines, lines[1:], strict=False):
            if nxt["index"] != prev["index"] + 1:
                continue
            ok_at = accepted.get((prev["run_id"], prev["generation"], prev["step"]))
            if ok_at is None or ok_at > index:
                violations.append(
                    f"log line {index}: call {nxt['call']} of run {nxt['run_id']} ran "
                    f"{nxt['step']} without an accepted checkpoint of {prev['step']} before it"
                )
    return violations


def _verify(
    app: App, api: Api, event_ids: dict[str, str], kills: list[tuple[float, float]],
    *, one_server: bool = True,
) -> tuple[list[str], str]:
    """Every event started one run that completed, and the app's log obeys the rules of the
    module docstring. Returns the violations (each naming the app) and a summary.

    With several servers (``one_server=False``), rule 3 does not apply as written: dispatches
    that logged before a kill may be another, living server's."""
    finals: dict[str, list[str]] = {}
    for event_id, tag in event_ids.items():
        runs = api.wait_runs(event_id, 1)
        assert len(runs) == 1, f"{app.kind}: event {event_id} ({tag}) started {len(runs)} runs"
        run = api.wait_ended(runs[0]["run_id"], timeout=120)
        assert run["status"] == "Completed", (app.kind, tag, run)
        finals[run["run_id"]] = run["output"]["nonces"]

    entries = app.observations(fn="crash-ten")
    assert {e["tag"] for e in entries} == set(event_ids.values()), app.kind
    js = app.kind == "js"
    logged = [
        e
        for e in app.observations()
        if (e["kind"] in ("step", "body-end") and e.get("fn") == "crash-ten")
        or (js and e["kind"] == "checkpoint")
    ]
    violations, repeats = check_exactly_once_after_stored(logged, finals, checkpointing=js,
                                                          last_rides_along=app.kind == "pyngest_fastapi")
    summary = f"{app.kind}: {len(finals)} runs, {repeats} repeated step bodies"
    if js:
        violations += check_checkpoints([e for e in logged if e["kind"] != "body-end"],
                                        kills if one_server else [])
        outcomes = Counter(e["outcome"] for e in logged if e["kind"] == "checkpoint")
        summary += f", checkpoints {dict(outcomes)}"
    return [f"{app.kind}: {v}" for v in violations], summary


@pytest.mark.timeout(900)
def test_sigkill_restart_exactly_once(tmp_path: Path) -> None:
    """All the crash apps at once on one server, so every kill lands on each SDK's runs."""
    seed = int(os.environ.get("CONFORMANCE_CRASH_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    context = f"(seed {seed}; rerun with CONFORMANCE_CRASH_SEED={seed})"

    server = Server(tmp_path / "server")
    server.workdir.mkdir()
    server.start()
    apps = [App(kind, tmp_path, server.url) for kind in CRASH_KINDS]
    try:
        for app in apps:
            app.start()
            error = app.sync_error()
            assert error is None, error
        api = server.api()

        def send(app: App, tags: list[str]) -> dict[str, str]:
            return dict(zip(_send_batch(api, tags, app.event("crash-ten")), tags, strict=True))

        event_ids = {
            app.kind: send(app, [f"crash-{i}" for i in range(INITIAL_RUNS)]) for app in apps
        }

        def finished(app: App) -> set[str]:
            return {e["tag"] for e in app.observations(kind="body-end", fn="crash-ten")}

        kill_log = []  # (time, {app: (runs started, runs done)})
        kills: list[tuple[float, float]] = []  # (SIGKILL sent, process gone)
        for kill in range(KILLS):
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment is the point: not a poll
            progress = {}
            for app in apps:
                done = finished(app)
                assert len(event_ids[app.kind]) > len(done), (
                    f"{app.kind}: all runs ended before kill {kill + 1}: nothing in flight {context}"
                )
                started = {e["tag"] for e in app.observations(kind="step", fn="crash-ten")}
                progress[app.kind] = (len(started), len(done))
            killed_at = time.time()
            kill_log.append((round(killed_at, 3), progress))
            server.kill9()
            kills.append((killed_at, time.time()))
            server.start()
            # Events acknowledged between crashes must start runs too.
            for app in apps:
                event_ids[app.kind] |= send(
                    app, [f"crash-r{kill}-{i}" for i in range(RUNS_PER_RESTART)]
                )

        total = sum(len(ids) for ids in event_ids.values())
        poll(
            lambda: sum(len(finished(app)) for app in apps) >= total,
            timeout=600,
            interval=1,
            what=f"all {total} runs to end {context}; kills (time, runs started/done): {kill_log}",
        )
        violations, summaries = [], []
        for app in apps:
            found, summary = _verify(app, api, event_ids[app.kind], kills)
            violations += found
            summaries.append(summary)
        assert not violations, f"{len(violations)} violations {context}:\n" + "\n".join(
            violations[:40]
        )
        print(f"crash test {context}: {KILLS} kills {kill_log}; " + "; ".join(summaries))
    finally:
        for app in apps:
            app.stop()
        server.stop()


def test_checker_catches_a_rerun_after_store() -> None:
    """The checker itself: a step body run again after its stored output was handed on fails."""
    log = [
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "a", "seen": []},
        {"kind": "step", "run_id": "r", "index": 1, "nonce": "b", "seen": ["a"]},
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "c", "seen": []},  # ran again
    ]
    finals = {"r": ["a", "b", *[f"n{i}" for i in range(2, STEPS)]]}
    log += [
        {"kind": "step", "run_id": "r", "index": i, "nonce": f"n{i}", "seen": finals["r"][:i]}
        for i in range(2, STEPS)
    ]
    violations, _ = check_exactly_once_after_stored(log, finals)
    assert any("ran again" in v for v in violations), violations

    # Replacing the stored output with the late one is caught too (step 1 saw "a").
    finals_replaced = {"r": ["c", "b", *finals["r"][2:]]}
    violations, _ = check_exactly_once_after_stored(log, finals_replaced)
    assert any("lost or replaced" in v for v in violations), violations


def test_checker_allows_a_rerun_before_store() -> None:
    """A body that ran twice because its first output never got stored is fine."""
    log = [
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "lost", "seen": []},
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "a", "seen": []},
    ]
    finals = {"r": ["a", *[f"n{i}" for i in range(1, STEPS)]]}
    log += [
        {"kind": "step", "run_id": "r", "index": i, "nonce": f"n{i}", "seen": finals["r"][:i]}
        for i in range(1, STEPS)
    ]
    log.append({"kind": "body-end", "run_id": "r", "seen": finals["r"]})
    violations, repeats = check_exactly_once_after_stored(log, finals)
    assert violations == [] and repeats == 1


def _js_step(k: int, t: float, generation: int = 1, call: str = "c") -> dict[str, Any]:
    return {
        "kind": "step",
        "run_id": "r",
        "step": f"s{k}",
        "index": k,
        "t": t,
        "generation": generation,
        "call": call,
    }


def _checkpoint(k: int, sent: float, outcome: str, generation: int = 1) -> dict[str, Any]:
    return {
        "kind": "checkpoint",
        "run_id": "r",
        "steps": [f"s{k}"],
        "generation": generation,
        "sent": sent,
        "outcome": outcome,
    }


def test_checkpoint_checker_catches_a_stale_dispatch_accepted() -> None:
    """Rule 3: the killed server's dispatch must not get a checkpoint accepted afterwards."""
    kills = [(2.0, 2.1)]
    log = [_js_step(0, 1.0), _checkpoint(0, 1.5, "ok"), _js_step(1, 1.6)]
    assert check_checkpoints([*log, _checkpoint(1, 3.0, "stale")], kills) == []
    violations = check_checkpoints([*log, _checkpoint(1, 3.0, "ok")], kills)
    assert any("after that server was gone, and accepted" in v for v in violations), violations
    # The restarted server's own dispatch (generation 2) may checkpoint after the kill.
    fresh = [_js_step(1, 4.0, generation=2, call="d"), _checkpoint(1, 4.5, "ok", generation=2)]
    assert check_checkpoints([*log, _checkpoint(1, 3.0, "stale"), *fresh], kills) == []


def test_checkpoint_checker_catches_a_step_run_without_accepted_checkpoint() -> None:
    """Rule 4: a call goes on to the next step only after its checkpoint was accepted."""
    ok = [_js_step(0, 1.0), _checkpoint(0, 1.5, "ok"), _js_step(1, 1.6)]
    assert check_checkpoints(ok, []) == []
    for bad in (
        [_js_step(0, 1.0), _checkpoint(0, 1.5, "error"), _js_step(1, 1.6)],
        [_js_step(0, 1.0), _js_step(1, 1.6), _checkpoint(0, 1.5, "ok")],  # accepted too late
        [_js_step(0, 1.0), _checkpoint(0, 1.5, "ok", generation=9), _js_step(1, 1.6)],
    ):
        violations = check_checkpoints(bad, [])
        assert any("without an accepted checkpoint" in v for v in violations), (bad, violations)


def test_checker_with_checkpointing_counts_only_accepted_outputs() -> None:
    """JS: the function's code after a step runs while that step's checkpoint is in flight, so
    its own output counts as handed out only once a checkpoint of it was accepted."""
    finals = {"r": [f"n{i}" for i in range(STEPS)]}
    earlier = [
        {**_js_step(i, float(i)), "nonce": f"n{i}", "seen": finals["r"][:i]} for i in range(9)
    ]
    last = {**_js_step(9, 9.0), "nonce": "lost", "seen": finals["r"][:9]}
    end = {"kind": "body-end", "run_id": "r", "call": "c", "seen": [*finals["r"][:9], "lost"]}
    rerun = {**_js_step(9, 12.0, generation=2, call="d"), "nonce": "n9", "seen": finals["r"][:9]}
    # s9's checkpoint failed (the server died), and a new dispatch ran s9 again: allowed.
    log = [*earlier, last, end, _checkpoint(9, 9.5, "stale"), rerun]
    violations, repeats = check_exactly_once_after_stored(log, finals, checkpointing=True)
    assert violations == [] and repeats == 1, violations
    # Had the server accepted s9 before the function's end, the rerun replaced a stored output.
    log = [*earlier, last, _checkpoint(9, 9.5, "ok"), end, rerun]
    violations, _ = check_exactly_once_after_stored(log, finals, checkpointing=True)
    assert any("lost or replaced" in v for v in violations), violations


def test_checker_allows_a_rerun_begun_before_the_output_was_stored() -> None:
    """Two requests of one run at once (a stale one answered late): the second execution began
    before the first one's output was accepted, so it is not a rerun of a stored step."""
    log: list[dict[str, Any]] = [
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "a", "seen": [], "call": "x", "generation": 1},
        {"kind": "step", "run_id": "r", "index": 0, "nonce": "c", "seen": [], "call": "y", "generation": 2},
        {"kind": "checkpoint", "run_id": "r", "generation": 1, "steps": ["s0"], "outcome": "ok"},
        {"kind": "checkpoint", "run_id": "r", "generation": 2, "steps": ["s0"], "outcome": "stale"},
    ]
    finals = {"r": ["a", *[f"n{i}" for i in range(1, STEPS)]]}
    log += [
        {"kind": "step", "run_id": "r", "index": i, "nonce": f"n{i}", "seen": finals["r"][:i], "call": "x",
         "generation": 1}
        for i in range(1, STEPS)
    ]
    violations, repeats = check_exactly_once_after_stored(log, finals, checkpointing=True)
    assert violations == [] and repeats == 1, violations
    # the same rerun after the accepted checkpoint is one
    late = [log[0], log[2], log[1], log[3], *log[4:]]
    violations, _ = check_exactly_once_after_stored(late, finals, checkpointing=True)
    assert any("ran again" in v for v in violations), violations


def test_checker_with_the_last_step_riding_along_ignores_only_that_observation() -> None:
    """pyngest: the function's end saw its last step's output before the server stored it (the
    answer carrying both was lost in a crash), so the step ran again; fine. A rerun of an
    earlier step, whose output the end also saw, is still caught."""
    finals = {"r": [f"n{i}" for i in range(STEPS)]}
    log = [
        {"kind": "step", "run_id": "r", "index": i, "nonce": f"n{i}" if i < STEPS - 1 else "lost",
         "seen": finals["r"][:i]}
        for i in range(STEPS)
    ]
    log.append({"kind": "body-end", "run_id": "r", "seen": [*finals["r"][:-1], "lost"]})
    log.append({"kind": "step", "run_id": "r", "index": STEPS - 1, "nonce": f"n{STEPS - 1}",
                "seen": finals["r"][:-1]})
    log.append({"kind": "body-end", "run_id": "r", "seen": finals["r"]})
    violations, repeats = check_exactly_once_after_stored(log, finals, last_rides_along=True)
    assert violations == [] and repeats == 1
    strict, _ = check_exactly_once_after_stored(log, finals)
    assert strict, "without the rule the lost answer's observation counts as stored"
    rerun = [*log, {"kind": "step", "run_id": "r", "index": 0, "nonce": "again", "seen": []}]
    violations, _ = check_exactly_once_after_stored(rerun, finals, last_rides_along=True)
    assert any("ran again" in v for v in violations), violations
