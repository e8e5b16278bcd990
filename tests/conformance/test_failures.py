"""Errors: retries (with the server's ``--retry-interval 1``), a Retry-After that overrides it,
exhausted retries, ``NonRetriableError``, and ``on_failure`` handlers."""

from __future__ import annotations

import pytest

from .harness import Api, App, new_tag, poll

pytestmark = pytest.mark.conformance


def _attempts(app: App, tag: str, fn: str) -> list[dict]:
    return app.observations(kind="step", fn=fn, tag=tag)


def test_retries_then_success(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("retry"), {"tag": tag, "fail_times": 2}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"succeeded_on_attempt": 2}
    tries = _attempts(app, tag, "retry")
    assert [t["attempt"] for t in tries] == [0, 1, 2], tries
    gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:], strict=False)]
    assert all(gap >= 1.0 - 0.05 for gap in gaps), gaps  # --retry-interval 1


def test_retries_exhausted(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("retry"), {"tag": tag, "fail_times": 99}))
    assert run["status"] == "Failed", run
    # retries=3: four attempts of the step, then the run fails; no further attempt after that.
    assert [t["attempt"] for t in _attempts(app, tag, "retry")] == [0, 1, 2, 3]


def test_retry_after_overrides_retry_interval(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("retry-after"), {"tag": tag, "retry_after_s": 3}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"succeeded_on_attempt": 1}
    tries = _attempts(app, tag, "retry-after")
    assert [t["attempt"] for t in tries] == [0, 1], tries
    # The server's retry interval is 1 s; the SDK asked for 3 s with Retry-After
    # (Python sends an ISO date, JS a number of seconds).
    assert tries[1]["t"] - tries[0]["t"] >= 3.0 - 0.05, tries


def test_non_retriable_error(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("non-retriable"), {"tag": tag}))
    assert run["status"] == "Failed", run
    # retries=3, but the error is non-retriable: exactly one attempt.
    assert [t["attempt"] for t in _attempts(app, tag, "non-retriable")] == [0]


def test_on_failure_handler(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("on-failure"), {"tag": tag}))
    assert run["status"] == "Failed", run
    (handled,) = poll(
        lambda: app.observations(kind="on-failure", tag=tag),
        what="the on_failure handler to run",
    )
    assert handled["event_name"] == "inngest/function.failed"
    assert handled["function_id"] == app.slug("on-failure")
    assert handled["failed_run_id"] == run["run_id"]
    assert "boom: on-failure test" in (handled["error_message"] or ""), handled
    assert handled["run_id"] != run["run_id"]
    assert len(app.observations(kind="body", fn="on-failure", tag=tag)) == 1
