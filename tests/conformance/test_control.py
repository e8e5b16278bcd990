"""Stopping runs from outside: ``cancelOn`` events (with an ``if`` that must match) and the
``timeouts.start`` / ``timeouts.finish`` limits."""

from __future__ import annotations

import time

import pytest

from .harness import Api, App, new_tag, poll

pytestmark = pytest.mark.conformance


def _steps(app: App, tag: str, fn: str) -> list[str]:
    return [o["step"] for o in app.observations(kind="step", fn=fn, tag=tag)]


def test_cancel_on_event(app: App, api: Api) -> None:
    doomed, spared = new_tag(), new_tag()
    doomed_event = api.send(app.event("cancellable"), {"tag": doomed, "key": doomed, "sleep_s": 60})
    spared_event = api.send(app.event("cancellable"), {"tag": spared, "key": spared, "sleep_s": 3})
    for tag in (doomed, spared):
        poll(lambda tag=tag: "start" in _steps(app, tag, "cancellable"), what=f"run {tag} to start")

    # Only the run whose event.data.key equals the cancel event's data.key is cancelled.
    api.send(app.event("cancel"), {"key": doomed})
    cancelled = api.wait_run(doomed_event)
    assert cancelled["status"] == "Cancelled", cancelled

    completed = api.wait_run(spared_event)
    assert completed["status"] == "Completed", completed
    assert _steps(app, spared, "cancellable") == ["start", "end"]
    # The spared run slept 3 s past the cancellation; the cancelled one never went on.
    assert _steps(app, doomed, "cancellable") == ["start"]


def test_timeout_finish(app: App, api: Api) -> None:
    tag = new_tag()
    sent = time.monotonic()
    run = api.wait_run(api.send(app.event("timeout-finish"), {"tag": tag, "sleep_s": 6}))
    took = time.monotonic() - sent
    assert run["status"] == "Cancelled", run
    assert took >= 2.0 - 0.05, took
    assert _steps(app, tag, "timeout-finish") == ["start"]


def test_timeout_start(app: App, api: Api) -> None:
    holder, starved = new_tag(), new_tag()
    holder_event = api.send(app.event("timeout-start"), {"tag": holder, "hold_s": 6})
    poll(lambda: _steps(app, holder, "timeout-start"), what="the first run to hold the slot")
    # Concurrency limit 1 keeps this run queued while the first one holds its step for 6 s;
    # its start timeout (2 s) passes first.
    starved_event = api.send(app.event("timeout-start"), {"tag": starved, "hold_s": 0})
    starved_run = api.wait_run(starved_event)
    assert starved_run["status"] == "Cancelled", starved_run
    assert _steps(app, starved, "timeout-start") == []
    holder_run = api.wait_run(holder_event)
    assert holder_run["status"] == "Completed", holder_run
    assert _steps(app, starved, "timeout-start") == []
