"""The queries the official SDKs' own test helpers send to a dev server get their answers.

The npm SDK's helpers (inngest-js ``packages/inngest/src/test/helpers.ts``, ``fetchRunResult``)
poll ``run(runID){ trace(preview: true){ stepType outputID status childrenSpans{...} } }`` until
a span of ``stepType`` ``FINALIZATION`` has an ``outputID``, then read it with
``runTraceSpanOutputByID`` (``data``, or ``error { name message stack cause }``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import Api, App, new_tag, poll

pytestmark = pytest.mark.conformance

# the npm SDK helpers' queries, verbatim
RUN_TRACE = """query ($runId: String!) {
          run(runID: $runId) {
            trace(preview: true) {
              stepType outputID status
              childrenSpans {
                stepType outputID status
                childrenSpans { stepType outputID status }
              }
            }
          }
        }"""
SPAN_OUTPUT = """query ($outputId: String!) {
        runTraceSpanOutputByID(outputID: $outputId) {
          data
          error { name message stack cause }
        }
      }"""


def _finalization_output_id(span: dict[str, Any]) -> str | None:
    if span.get("stepType") == "FINALIZATION" and span.get("outputID"):
        return str(span["outputID"])
    for child in span.get("childrenSpans") or []:
        found = _finalization_output_id(child)
        if found:
            return found
    return None


def _run_result(api: Api, run_id: str) -> dict[str, Any]:
    def output_id() -> str | None:
        trace = api.gql(RUN_TRACE, {"runId": run_id})["run"]["trace"]
        return _finalization_output_id(trace) if trace else None

    found = poll(output_id, what=f"the FINALIZATION span of run {run_id}")
    return dict(api.gql(SPAN_OUTPUT, {"outputId": found})["runTraceSpanOutputByID"])


def _run_id(api: Api, app: App, fn: str) -> str:
    (run,) = api.wait_runs(api.send(app.event(fn), {"tag": new_tag()}))
    return str(run["run_id"])


def test_completed_run_result(app: App, api: Api) -> None:
    result = _run_result(api, _run_id(api, app, "steps-memo"))
    assert result["error"] is None
    assert json.loads(result["data"]) == {"values": [1, 2, 3]}


def test_failed_run_result(app: App, api: Api) -> None:
    result = _run_result(api, _run_id(api, app, "non-retriable"))
    assert result["data"] is None
    error = result["error"]
    assert (error["name"], error["message"]) == ("NonRetriableError", "no retry please")
    assert "NonRetriableError" in error["stack"]
