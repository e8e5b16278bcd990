"""Waiting on other things: ``waitForEvent`` (fulfilled, timed out, ``if`` not matching) and
``invoke`` (by id, a failing child, a child that outlives the timeout)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .harness import TERMINAL, Api, App, new_tag, poll

pytestmark = pytest.mark.conformance


def _run_of(api: Api, event_id: str) -> str:
    (run,) = api.wait_runs(event_id, 1)
    return str(run["run_id"])


def _keep_sending_until_ended(
    api: Api, run_id: str, name: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Send ``name`` every half second until the run ends.

    The wait's pause exists only once the SDK has answered with the WaitForEvent op, and only
    events that arrive after it count; sending repeatedly needs no knowledge of that moment.
    """
    last_sent = 0.0

    def ended() -> dict[str, Any] | None:
        nonlocal last_sent
        run = api.run(run_id)
        if run.get("status") in TERMINAL:
            return run
        if time.monotonic() - last_sent >= 0.5:
            api.send(name, data)
            last_sent = time.monotonic()
        return None

    return poll(ended, what=f"run {run_id} to end while sending {name}")


def test_wait_for_event_fulfilled(app: App, api: Api) -> None:
    tag, key = new_tag(), new_tag()
    run_id = _run_of(api, api.send(app.event("wait"), {"tag": tag, "key": key, "timeout_s": 60}))
    reply = {"key": key, "value": "hello"}
    run = _keep_sending_until_ended(api, run_id, app.event("wait.reply"), reply)
    assert run["status"] == "Completed", run
    assert run["output"]["received"] == reply, run["output"]


def test_wait_for_event_timed_out(app: App, api: Api) -> None:
    tag, key = new_tag(), new_tag()
    sent = time.time()
    run = api.wait_run(api.send(app.event("wait"), {"tag": tag, "key": key, "timeout_s": 2}))
    assert run["status"] == "Completed", run
    assert run["output"]["received"] is None, run["output"]
    assert time.time() - run["output"]["started"] >= 2.0 - 0.05
    assert run["output"]["started"] >= sent - 1


def test_wait_for_event_if_not_matching(app: App, api: Api) -> None:
    tag, key = new_tag(), new_tag()
    run_id = _run_of(api, api.send(app.event("wait"), {"tag": tag, "key": key, "timeout_s": 3}))
    # Events with the right name but another key do not satisfy `async.data.key == event.data.key`.
    run = _keep_sending_until_ended(
        api, run_id, app.event("wait.reply"), {"key": f"not-{key}", "value": "wrong"}
    )
    assert run["status"] == "Completed", run
    assert run["output"]["received"] is None, run["output"]
    assert time.time() - run["output"]["started"] >= 3.0 - 0.05


def test_invoke_by_id(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("invoke"), {"tag": tag, "mode": "ok"}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"result": {"doubled": 42}}
    child_steps = app.observations(kind="step", fn="invoke-child", tag=tag)
    assert [o["step"] for o in child_steps] == ["double"]
    assert child_steps[0]["run_id"] != run["run_id"]


def test_invoke_failing_child(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("invoke"), {"tag": tag, "mode": "fail"}))
    assert run["status"] == "Completed", run
    error = run["output"].get("error")
    assert error, run["output"]
    assert "child failed on purpose" in error["message"], error
    # The child has no retries and failed non-retriably: its body ran once.
    assert len(app.observations(kind="body", fn="invoke-child-fail", tag=tag)) == 1


def test_invoke_timing_out(app: App, api: Api) -> None:
    tag = new_tag()
    sent = time.monotonic()
    run = api.wait_run(
        api.send(
            app.event("invoke"),
            {"tag": tag, "mode": "timeout", "timeout_s": 2, "child_sleep_s": 30},
        )
    )
    took = time.monotonic() - sent
    assert run["status"] == "Completed", run
    error = run["output"].get("error")
    assert error, run["output"]
    assert "timed out" in error["message"].lower(), error
    # not before the invoke's timeout (the child sleeps 30 s and is still sleeping)
    assert took >= 2.0 - 0.05, took
