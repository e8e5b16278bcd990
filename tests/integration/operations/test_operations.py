"""Pausing a function, bulk cancellation, replay and rerun, against a real ``pyngest dev``
process and real apps (this project's SDK and the official one), over the REST routes of
docs/operations.md.

The scenarios run once per SDK (the ``app`` fixture); checks of the server alone use one app.
Runs that must stay in flight sleep a minute or wait for an event nobody sends. The few "this
must not happen" checks are bounded by a witness: a run of an unpaused function whose sleep
ends after the held run's, so that when it has finished the held run's next step has been due
for a while. Timestamps are built here with the standard library, not the server's helpers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.conformance.harness import poll

from .conftest import Ops, OpsApp


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reached(app: OpsApp, run_id: str, step: str) -> list[dict[str, Any]]:
    return poll(lambda: app.observations(kind="step", run_id=run_id, step=step), timeout=30,
                what=f"step {step} of run {run_id}")


def _cancellations_seen(app: OpsApp, run_ids: set[str]) -> dict[str, tuple[str, Any]]:
    """run id -> (function_id, the original event's data) of the ``inngest/function.cancelled``
    events the app's handler got for these runs."""
    def seen() -> dict[str, tuple[str, Any]]:
        got = {o["run_id"]: (o["function_id"], o["event_data"])
               for o in app.observations(kind="cancelled") if o["run_id"] in run_ids}
        return got if set(got) == run_ids else {}

    return poll(seen, timeout=30, what=f"inngest/function.cancelled for {sorted(run_ids)}")


def test_pause_holds_runs_between_steps_skips_new_events_and_resume_continues(app: OpsApp, ops: Ops) -> None:
    """Three runs in flight: one in a 3 s sleep, one waiting for an event that comes while
    paused, one in the middle of a 1.5 s step (it finishes, and its output is kept)."""
    sleeping = ops.run_of(ops.api.send(app.event("hold"), {"n": 1, "nap": 3}))["run_id"]
    waiting = ops.run_of(ops.api.send(app.event("gate"), {"n": 7}))["run_id"]
    _reached(app, sleeping, "a")
    _reached(app, waiting, "a")
    in_step = ops.run_of(ops.api.send(app.event("hold"), {"n": 4, "slow": 1.5, "nap": 0}))["run_id"]
    _reached(app, in_step, "a")

    paused: dict[str, dict[str, Any]] = {}
    for fn in ("hold", "gate"):
        res = ops.post(f"/v1/functions/{app.slug(fn)}/pause")
        assert res.status_code == 200, res.text
        paused[fn] = res.json()["data"]
        assert paused[fn]["paused"] is True and paused[fn]["slug"] == app.slug(fn)
        # the default: running runs wait, and are cancelled if the function is still paused in 7 days
        assert paused[fn]["cancellation"]["status"] == "running"
    again = ops.post(f"/v1/functions/{app.slug('hold')}/pause", {"cancel_running": True})
    assert again.status_code == 200 and again.json()["data"]["cancellation"] is None  # already paused
    ops.api.send(app.event("open"), {"n": 7})

    witness = ops.run_of(ops.api.send(app.event("witness"), {"n": 0, "nap": 3}))["run_id"]
    skipped_event = ops.api.send(app.event("hold"), {"n": 2})
    assert poll(lambda: ops.skips(skipped_event), timeout=20, what="the skip") == [
        (paused["hold"]["id"], "function_paused")]
    assert ops.api.wait_ended(witness)["status"] == "Completed"
    time.sleep(0.5)
    assert len(app.observations(kind="step", run_id=in_step, step="a-end")) == 1
    assert [ops.status(sleeping), ops.status(waiting), ops.status(in_step)] == ["Running"] * 3
    for run in (sleeping, waiting, in_step):
        assert app.observations(kind="step", run_id=run, step="b") == []
    assert ops.api.event_runs(skipped_event) == []

    pending = ops.get("/v1/cancellations", function_id=app.slug("gate"))
    assert [(h["id"], h["status"]) for h in pending] == [(paused["gate"]["cancellation"]["id"], "running")]
    # stop the gate's 7-day cancellation by hand: the run stays paused, and is not cancelled
    stopped = ops.delete(f"/v1/cancellations/{paused['gate']['cancellation']['id']}")
    assert stopped.status_code == 200 and stopped.json()["data"]["status"] == "stopped"
    assert ops.status(waiting) == "Running"
    for fn in ("hold", "gate"):  # by the function's id this time, not its slug
        res = ops.post(f"/v1/functions/{paused[fn]['id']}/resume")
        assert res.status_code == 200 and res.json()["data"]["paused"] is False
    done = [ops.api.wait_ended(run) for run in (sleeping, waiting, in_step)]
    assert [(r["status"], r["output"]) for r in done] == [
        ("Completed", {"n": 1}), ("Completed", {"n": 7, "opened": True}), ("Completed", {"n": 4})]
    for run in (sleeping, in_step):
        steps = [o["step"] for o in app.observations(kind="step", run_id=run)]
        assert steps.count("a") == 1 and steps.count("b") == 1  # step a was not run again
    for fn in ("hold", "gate"):
        assert ops.get(f"/v1/cancellations/{paused[fn]['cancellation']['id']}")["status"] == "stopped"
    # events received while paused are not reprocessed; new ones trigger it again
    assert ops.api.event_runs(skipped_event) == []
    after = ops.api.wait_run(ops.api.send(app.event("hold"), {"n": 3, "nap": 0.2}))
    assert (after["status"], after["output"]) == ("Completed", {"n": 3})


def test_pause_with_cancel_running_cancels_them_and_emits_function_cancelled(app: OpsApp, ops: Ops) -> None:
    slug = app.slug("doomed")
    # two runs between steps, and one in the middle of a step that would go on to step b at once
    data: list[dict[str, Any]] = [{"n": 1, "nap": 60}, {"n": 2, "nap": 60}, {"n": 3, "slow": 1.5, "nap": 0}]
    runs = [ops.run_of(ops.api.send(app.event("doomed"), d))["run_id"] for d in data]
    for run in runs:
        _reached(app, run, "a")

    res = ops.post(f"/v1/functions/{slug}/pause", {"cancel_running": True})
    assert res.status_code == 200, res.text
    cancellation = res.json()["data"]["cancellation"]
    for run in runs:
        assert ops.wait_status(run, "Cancelled")["ended_at"] is not None
    assert ops.wait_operation("cancellations", cancellation["id"])["cancelled"] == 3
    assert _cancellations_seen(app, set(runs)) == {
        run: (slug, d) for run, d in zip(runs, data, strict=True)}

    assert ops.post(f"/v1/functions/{slug}/resume").status_code == 200
    _reached(app, runs[2], "a-end")  # the step in flight was not interrupted, its result is dropped
    restarted = ops.api.wait_run(ops.api.send(app.event("doomed"), {"n": 4, "nap": 0.2}))
    assert restarted["status"] == "Completed"
    assert [ops.status(run) for run in runs] == ["Cancelled"] * 3
    assert [o for o in app.observations(kind="step", fn="doomed", step="b") if o["run_id"] in runs] == []


def test_bulk_cancellation_by_time_range_and_expression_with_history(app: OpsApp, ops: Ops) -> None:
    slug = app.slug("waiter")

    def start(*groups: str) -> list[dict[str, Any]]:
        runs = [ops.run_of(ops.api.send(app.event("waiter"), {"group": g})) for g in groups]
        for run in runs:
            _reached(app, run["run_id"], "a")  # now waiting for an event that never comes
        return runs

    early = start("x", "y", "x")
    late = start("x", "y")
    runs = [r["run_id"] for r in early + late]
    since = _iso(min(_ms(r["queued_at"]) for r in early) - 1)
    split = _iso((max(_ms(r["queued_at"]) for r in early) + min(_ms(r["queued_at"]) for r in late)) // 2)

    res = ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "waiter", "name": "early x",
                                         "started_after": since, "started_before": split,
                                         "if": "event.data.group == 'x'"})
    assert res.status_code == 201, res.text
    first = res.json()
    assert first["function_id"] == "waiter" and first["if"] == "event.data.group == 'x'"
    assert (first["started_after"], first["started_before"]) == (since, split)
    assert ops.wait_operation("cancellations", first["id"])["cancelled"] == 2
    assert [ops.status(r) for r in runs] == ["Cancelled", "Running", "Cancelled", "Running", "Running"]

    res = ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "waiter", "name": "late",
                                         "started_after": split})
    second = res.json()
    assert ops.wait_operation("cancellations", second["id"])["cancelled"] == 2
    assert [ops.status(r) for r in runs] == ["Cancelled", "Running", "Cancelled", "Cancelled", "Cancelled"]

    res = ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "waiter", "name": "the rest"})
    assert ops.wait_operation("cancellations", res.json()["id"])["cancelled"] == 1
    assert ops.status(runs[1]) == "Cancelled"

    history = ops.get("/v1/cancellations", function_id=slug)
    assert [(h["name"], h["status"], h["cancelled"]) for h in history] == [
        ("the rest", "completed", 1), ("late", "completed", 2), ("early x", "completed", 2)]
    assert history[2]["if"] == "event.data.group == 'x'" and history[1]["started_after"] == split
    assert all(h["finished_at"] is not None for h in history)
    groups = ["x", "y", "x", "x", "y"]
    assert _cancellations_seen(app, set(runs)) == {
        run: (slug, {"group": g}) for run, g in zip(runs, groups, strict=True)}

    bad = ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "waiter", "if": "event.data =="})
    assert bad.status_code == 400 and "invalid" in bad.json()["error"]
    assert ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "nope"}).status_code == 404


def test_replay_failed_cancelled_and_skipped_runs_after_the_fix_then_rerun_one(app: OpsApp, ops: Ops) -> None:
    slug = app.slug("flaky")
    app.set_flag("broken", True)
    app.set_flag("hold", True)
    try:
        failed = [ops.api.wait_run(ops.api.send(app.event("flaky"), {"n": n})) for n in (1, 2)]
        assert [r["status"] for r in failed] == ["Failed", "Failed"]
        cancelled = ops.run_of(ops.api.send(app.event("flaky"), {"n": 3, "hold": True}))
        _reached(app, cancelled["run_id"], "held")  # now in its minute of sleep
        assert ops.post(f"/v1/functions/{slug}/pause", {"cancel_running": True}).status_code == 200
        ops.wait_status(cancelled["run_id"], "Cancelled")
        skipped_event = ops.api.send(app.event("flaky"), {"n": 4})
        poll(lambda: ops.skips(skipped_event), timeout=20, what="the skip")
        assert ops.post(f"/v1/functions/{slug}/resume").status_code == 200
    finally:
        app.set_flag("broken", False)  # the fix
        app.set_flag("hold", False)

    originals = [*failed, cancelled]
    since = min(_ms(r["queued_at"]) for r in originals) - 1000
    res = ops.post("/v1/replays", {"function_id": slug, "name": "after the fix", "from": _iso(since),
                                   "to": _iso(int(time.time() * 1000) + 1000),
                                   "statuses": ["Failed", "Cancelled", "Skipped"]})
    assert res.status_code == 201, res.text
    replay = res.json()["data"]
    assert replay["status"] in ("running", "completed") and replay["statuses"] == ["Cancelled", "Failed", "Skipped"]
    assert ops.wait_operation("replays", replay["id"])["scheduled"] == 4
    assert [h["id"] for h in ops.get("/v1/replays", function_id=slug)] == [replay["id"]]

    for n, original in enumerate(originals, start=1):
        runs = ops.api.wait_runs(original["event_id"], count=2)
        [new] = [r for r in runs if r["run_id"] != original["run_id"]]
        new = ops.api.wait_ended(new["run_id"])
        assert (new["status"], new["output"], new["original_run_id"]) == ("Completed", {"n": n}, original["run_id"])
        assert ops.status(original["run_id"]) in ("Failed", "Cancelled")
    [from_skip] = ops.api.wait_runs(skipped_event)
    from_skip = ops.api.wait_ended(from_skip["run_id"])
    assert (from_skip["status"], from_skip["output"]) == ("Completed", {"n": 4})
    assert "original_run_id" not in from_skip

    res = ops.post(f"/v1/runs/{failed[0]['run_id']}/rerun")
    assert res.status_code == 200, res.text
    rerun = ops.api.wait_ended(res.json()["data"]["run_id"])
    assert (rerun["status"], rerun["output"], rerun["original_run_id"]) == ("Completed", {"n": 1}, failed[0]["run_id"])
    assert rerun["event_id"] == failed[0]["event_id"]
    assert len(ops.api.event_runs(failed[0]["event_id"])) == 3

    weird = ops.post("/v1/replays", {"function_id": slug, "from": _iso(since), "to": _iso(since + 1),
                                     "statuses": ["Weird"]})
    empty = ops.post("/v1/replays", {"function_id": slug, "from": _iso(since), "to": _iso(since),
                                     "statuses": ["Failed"]})
    assert (weird.status_code, empty.status_code) == (400, 400)
    assert ops.post("/v1/runs/01J0000000000000000000000X/rerun").status_code == 404


def test_replay_of_succeeded_runs(apps: dict[str, OpsApp], ops: Ops) -> None:
    app = apps["pyngest"]  # the server's side: one SDK is enough
    runs = [ops.api.wait_run(ops.api.send(app.event("witness"), {"n": n, "nap": 0})) for n in (10, 11)]
    assert [r["status"] for r in runs] == ["Completed", "Completed"]
    queued = [_ms(r["queued_at"]) for r in runs]
    res = ops.post("/v1/replays", {"function_id": app.slug("witness"), "from": _iso(min(queued) - 1),
                                   "to": _iso(max(queued) + 1), "statuses": ["Succeeded"]})
    assert res.status_code == 201, res.text
    assert ops.wait_operation("replays", res.json()["data"]["id"])["scheduled"] == 2
    for n, original in zip((10, 11), runs, strict=True):
        [new] = [r for r in ops.api.wait_runs(original["event_id"], count=2) if r["run_id"] != original["run_id"]]
        new = ops.api.wait_ended(new["run_id"])
        assert (new["status"], new["output"], new["original_run_id"]) == ("Completed", {"n": n}, original["run_id"])


def test_a_completed_operation_reports_its_total(apps: dict[str, OpsApp], ops: Ops) -> None:
    app = apps["pyngest"]
    runs = [ops.run_of(ops.api.send(app.event("doomed"), {"n": n, "nap": 60, "batch": "total"}))["run_id"]
            for n in (1, 2)]
    for run in runs:
        _reached(app, run, "a")
    res = ops.post("/v1/cancellations", {"app_id": app.id, "function_id": "doomed", "if": "event.data.batch == 'total'"})
    assert res.status_code == 201, res.text
    done = ops.wait_operation("cancellations", res.json()["id"])
    assert done["cancelled"] == 2
    assert done["matched"] == done["cancelled"] == 2


def test_a_pause_survives_a_resync_and_a_server_restart(apps: dict[str, OpsApp], ops: Ops) -> None:
    app = apps["pyngest"]  # the server's side: one SDK is enough
    held = ops.run_of(ops.api.send(app.event("hold"), {"n": 5, "nap": 1}))["run_id"]
    _reached(app, held, "a")
    assert ops.post(f"/v1/functions/{app.slug('hold')}/pause").status_code == 200
    assert app.sync_error() is None
    ops.server.restart()  # SIGKILL, then the same port and data

    skipped_event = ops.api.send(app.event("hold"), {"n": 6})
    assert [reason for _, reason in poll(lambda: ops.skips(skipped_event), timeout=20, what="the skip")] == [
        "function_paused"]
    witness = ops.run_of(ops.api.send(app.event("witness"), {"n": 0, "nap": 1}))["run_id"]
    assert ops.api.wait_ended(witness)["status"] == "Completed"
    time.sleep(0.5)
    assert ops.status(held) == "Running"
    assert app.observations(kind="step", run_id=held, step="b") == []

    assert ops.post(f"/v1/functions/{app.slug('hold')}/resume").status_code == 200
    assert ops.api.wait_ended(held)["output"] == {"n": 5}
