"""Runs in the ecosystem's terms: with ``--otel-endpoint`` the server exports a trace per run to
a real OTLP/HTTP receiver (``otlp_collector.py``), a span per step, attempt, sleep and wait;
with ``--json`` every run-level event is a JSON log line carrying ``run_id``, ``fn`` and ``app``.
Driven through the official Python SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from pyngest.protocol.ids import decode

from .harness import Api, App, Server, new_tag, poll
from .otlp_collector import Collector

pytestmark = pytest.mark.conformance

SLEEP_TRACE = """query ($runId: String!) {
  run(runID: $runId) { trace {
    childrenSpans { name startedAt endedAt stepInfo { ... on SleepStepInfo { sleepUntil } } }
  } }
}"""


def _epoch_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector().start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def server(workdir: Path, collector: Collector) -> Iterator[Server]:
    srv = Server(workdir / "server", extra_args=["--otel-endpoint", collector.url, "--json"])
    srv.workdir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("app", ["py_fastapi"], indirect=True)
def test_a_trace_per_run_with_its_steps_attempts_and_sleep(app: App, api: Api, collector: Collector) -> None:
    retried = api.wait_run(api.send(app.event("retry"), {"tag": new_tag(), "fail_times": 1}))
    slept = api.wait_run(api.send(app.event("sleep"), {"tag": new_tag(), "seconds": 1}))
    for run in (retried, slept):
        assert run["status"] == "Completed", run
    spans = poll(lambda: collector.trace(retried["run_id"]), what="the retried run's trace")
    names = {s.name for s in spans}
    assert {app.slug("retry"), "flaky", "attempt 1", "attempt 2"} <= names, names
    (root,) = [s for s in spans if not s.parent_id]
    # the trace id is the run's ULID; every span carries the run, function and app
    assert int(root.trace_id, 16) == decode(retried["run_id"])
    assert all(s.trace_id == root.trace_id for s in spans)
    assert {(s.attributes["inngest.function"], s.attributes["inngest.app"]) for s in spans} == {
        (app.slug("retry"), app.id)}
    assert root.attributes["inngest.status"] == "Completed" and root.service == "pyngest"
    (flaky,) = [s for s in spans if s.name == "flaky"]
    attempts = sorted((s for s in spans if s.parent_id == flaky.span_id), key=lambda s: s.start_ns)
    assert [(s.attributes["inngest.attempt"], s.error) for s in attempts] == [(0, True), (1, False)]
    assert root.start_ns <= flaky.start_ns <= flaky.end_ns <= root.end_ns

    sleeping = poll(lambda: collector.trace(slept["run_id"]), what="the sleeping run's trace")
    (nap,) = [s for s in sleeping if s.name == "nap"]
    assert nap.attributes["inngest.step.op"] == "SLEEP"
    # the span is the stored step's: from the sleep's start to its end, which came no earlier
    # than the stored wake time. The official SDK asks to sleep until a time it works out itself
    # (now + 1 s by the app's clock, a moment before the server records the sleep), so the wake
    # is at most a second after the start. (Span lengths by the wall clock are not compared: a
    # VM's clock may step while a run sleeps.)
    trace = api.gql(SLEEP_TRACE, {"runId": slept["run_id"]})["run"]["trace"]
    (step,) = [s for s in trace["childrenSpans"] if s["name"] == "nap"]
    started, ended, until = (_epoch_ms(step["startedAt"]), _epoch_ms(step["endedAt"]),
                             _epoch_ms(step["stepInfo"]["sleepUntil"]))
    assert (nap.start_ns, nap.end_ns) == (started * 1_000_000, ended * 1_000_000)
    assert started < until <= started + 1000 and ended >= until, step


@pytest.mark.parametrize("app", ["py_fastapi"], indirect=True)
def test_json_run_events_carry_run_fn_and_app(app: App, api: Api, server: Server) -> None:
    run = api.wait_run(api.send(app.event("retry"), {"tag": new_tag(), "fail_times": 1}))

    def events() -> list[dict]:
        assert server.proc is not None
        lines = server.proc.out.read_text().splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith("{")]
        found = [e for e in parsed if e.get("run_id") == run["run_id"]]
        return found if any(e["msg"].startswith("run completed") for e in found) else []

    found = poll(events, what="the run's log lines")
    assert [e["msg"].split(":")[0] for e in found] == [
        "run created", "run started", "step failed, will retry", "run completed"]
    assert all(e["fn"] == app.slug("retry") and e["app"] == app.id for e in found), found
