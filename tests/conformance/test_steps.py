"""Steps: memoization with repeated ids, sleep and sleep-until, parallel steps, large state
through ``use_api``, and ``step.fetch`` — each driven through the official SDK apps."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from .harness import Api, App, large_state_digests, new_tag

pytestmark = pytest.mark.conformance


def _steps(app: App, tag: str, fn: str) -> list[str]:
    return [o["step"] for o in app.observations(kind="step", fn=fn, tag=tag)]


def test_steps_and_memoization_with_repeated_ids(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": tag}))
    assert run["status"] == "Completed", run
    # Each `add` step returns the previous step's memoized output + 1: the SDK only gets 2 and
    # 3 if the server fed back the earlier steps' outputs under their distinct hashed ids.
    assert run["output"] == {"values": [1, 2, 3]}
    # Every step body ran exactly once, although the function was entered again per step.
    assert _steps(app, tag, "steps-memo") == ["add#0", "add#1", "add#2"]
    assert app.observations(kind="body-end", fn="steps-memo", tag=tag), "function never returned"


def test_step_outputs_in_run_trace(app: App, api: Api) -> None:
    """The GraphQL trace lists the three `add` steps and their outputs (PROTOCOL.md §9.2)."""
    tag = new_tag()
    run = api.wait_run(api.send(app.event("steps-memo"), {"tag": tag}))
    assert run["status"] == "Completed", run
    data = api.gql(
        "query($runID: String!) { run(runID: $runID) { status output "
        "trace { childrenSpans { name outputID status attempts } } } }",
        {"runID": run["run_id"]},
    )["run"]
    assert data["status"] == "COMPLETED"
    assert json.loads(data["output"]) == {"values": [1, 2, 3]}
    # Upstream names a repeated step "add", "add:1", "add:2" or "add" each time, depending on
    # the SDK version; accept both.
    spans = [
        s
        for s in data["trace"]["childrenSpans"]
        if s["name"] == "add" or s["name"].startswith("add:")
    ]
    assert len(spans) == 3, data["trace"]
    outputs = []
    for span in spans:
        assert span["outputID"], span
        out = api.gql(
            "query($id: String!) { runTraceSpanOutputByID(outputID: $id) "
            "{ data error { message name stack } } }",
            {"id": span["outputID"]},
        )["runTraceSpanOutputByID"]
        assert out["error"] is None, out
        outputs.append(json.loads(out["data"]))
    assert sorted(outputs) == [1, 2, 3]


def test_sleep(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("sleep"), {"tag": tag, "seconds": 2}))
    assert run["status"] == "Completed", run
    out = run["output"]
    # "after" is a step that runs only once the sleep is over.
    assert out["after"] - out["before"] >= 2.0 - 0.05, out
    assert _steps(app, tag, "sleep") == ["before", "after"]


def test_sleep_until(app: App, api: Api) -> None:
    tag = new_tag()
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    until_text = until.strftime("%Y-%m-%dT%H:%M:%S.") + f"{until.microsecond // 1000:03d}Z"
    run = api.wait_run(api.send(app.event("sleep-until"), {"tag": tag, "until": until_text}))
    assert run["status"] == "Completed", run
    assert run["output"]["after"] >= until.timestamp() - 0.05, (run["output"], until_text)
    assert _steps(app, tag, "sleep-until") == ["after"]


def test_parallel_steps(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("parallel"), {"tag": tag}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"parts": [1, 2, 4], "sum": 7}
    steps = _steps(app, tag, "parallel")
    # The three branches each ran once (in any order), and the step after them once, last.
    assert sorted(steps[:3]) == ["p1", "p2", "p3"] and steps[3:] == ["sum"], steps


def test_large_state_through_use_api(app: App, api: Api) -> None:
    """Six 1 MiB step outputs: more state than fits a request body (4 MiB), so the server must
    set ``use_api`` and serve the state from ``GET /v0/runs/{id}/actions`` and ``/batch``."""
    tag = new_tag()
    size, count = 1024 * 1024, 6
    run = api.wait_run(
        api.send(app.event("large-state"), {"tag": tag, "size": size, "count": count}),
        timeout=180,
    )
    assert run["status"] == "Completed", run
    assert run["output"] == {"pieces": large_state_digests(size, count)}
    assert _steps(app, tag, "large-state") == [f"piece-{i}" for i in range(count)] + ["check"]
    fetched = app.observations(kind="use_api", run_id=run["run_id"])
    assert fetched, "the SDK never fetched the run's state through the API (use_api not set)"


@pytest.mark.parametrize("app", ["js"], indirect=True)  # step.fetch: only the npm SDK has it
def test_step_fetch(app: App, api: Api) -> None:
    tag = new_tag()
    started = time.time()
    run = api.wait_run(api.send(app.event("fetch"), {"tag": tag, "url": f"{app.base}/echo"}))
    assert run["status"] == "Completed", run
    assert run["output"] == {"status": 200, "body": {"echoed": tag, "method": "GET"}}
    hits = [o for o in app.observations(kind="echo", tag=tag) if o["t"] >= started - 1]
    assert len(hits) == 1, hits


# inngest-js src/test/integration/middleware/parallelSteps.test.ts, "info hooks for parallel
# steps" (as of the v4 hooks the pinned SDK has): what the run's requests log, in order.
FIRST_REQUEST = [
    "onMemoizationEnd", "onRunStart", "fn: top", "onStepStart", "step-1: inside", "onStepComplete",
]
# Upstream's list has a request here that only plans the parallel group; the npm SDK, which
# checkpoints step-1 to pyngest, goes on to plan the group within the first request.
PLANNING_REQUEST = ["fn: top", "onMemoizationEnd"]
AFTER_PLANNING = [
    # the planned step-2-a
    "fn: top", "onMemoizationEnd", "onStepStart", "step-2-a: inside", "onStepComplete",
    # after the sleep: discovery, which plans step-3 (immediate execution still disabled)
    "fn: top", "onMemoizationEnd",
    # the planned step-3
    "fn: top", "onMemoizationEnd", "onStepStart", "step-3: inside", "onStepComplete",
    # the end
    "fn: top", "onMemoizationEnd", "fn: bottom", "onRunComplete",
]


@pytest.mark.parametrize("app", ["js"], indirect=True)
def test_parallel_group_with_a_sleep_keeps_planning_steps(app: App, api: Api) -> None:
    tag = new_tag()
    run = api.wait_run(api.send(app.event("parallel-sleep"), {"tag": tag}))
    assert run["status"] == "Completed", run
    assert run["output"]["parallel"] == ["step-2-a: output", None]
    hooks = [entry["what"] for entry in app.observations(kind="hook", tag=tag)]
    assert hooks in (
        FIRST_REQUEST + AFTER_PLANNING,
        FIRST_REQUEST + PLANNING_REQUEST + AFTER_PLANNING,
    ), "\n".join(hooks)
