"""Cron triggers. Inngest crons have one-minute resolution (5-field expressions), so this
module syncs every app at its start and then waits for the next minute boundary, at most ~60 s
once for all the apps; the other modules run meanwhile under ``pytest -n``."""

from __future__ import annotations

import pytest

from .conftest import AppPool
from .harness import APP_KINDS, Api, poll

pytestmark = pytest.mark.conformance


@pytest.fixture(scope="module")
def synced_all(apps: AppPool) -> AppPool:
    for kind in APP_KINDS:
        apps.get(kind)
    return apps


@pytest.mark.parametrize("kind", APP_KINDS)
def test_cron_fires(kind: str, synced_all: AppPool, api: Api) -> None:
    app = synced_all.get(kind)
    fired = poll(
        lambda: app.observations(kind="cron"),
        timeout=150,
        interval=0.5,
        what=f"the every-minute cron of {kind} to fire",
    )
    first = fired[0]
    assert first["event_name"] == "inngest/scheduled.timer", first
    assert first["cron"] == "* * * * *", first
    run = api.wait_ended(first["run_id"])
    assert run["status"] == "Completed", run
    assert run["output"] == {"event": "inngest/scheduled.timer"}
    # One minute, one run: the scheduler does not fire the same minute twice.
    minutes = [int(o["t"] // 60) for o in app.observations(kind="cron")]
    assert len(minutes) == len(set(minutes)), fired
