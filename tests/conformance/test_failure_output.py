"""A failed run's output is the error object the SDK answered with, unchanged (upstream's
``run.output`` and REST ``output``): ``stack: null`` kept, ``code`` kept, nothing rebuilt.

The expected objects for the Python SDKs are those of the official SDK's own test suite
(inngest-py ``tests/test_function/cases``: non_retriable_error, invoke_timeout,
unexpected_step_during_targeting, parallel_step_disappears, unserializable_step_output);
pyngest's SDK must answer the same. The npm SDK sends its serialized error
(``{"__serialized": true, "name", "message", "stack"}``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import Api, App, new_tag

pytestmark = pytest.mark.conformance

PY_APPS = ["py_fastapi", "py_flask", "pyngest_fastapi", "pyngest_flask", "pyngest_django", "pyngest_fastapi_classic"]


def _failed(api: Api, app: App, fn: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    run = api.wait_run(api.send(app.event(fn), {"tag": new_tag(), **(data or {})}))
    assert run["status"] == "Failed", run
    return run


def _gql_output(api: Api, run_id: str) -> Any:
    """``run.output`` as upstream's GraphQL returns it: the JSON text of the output."""
    data = api.gql("query($id: String!) { run(runID: $id) { output } }", {"id": run_id})
    return data["run"]["output"]


def _assert_js_error(output: Any, name: str, message: str) -> None:
    assert set(output) == {"__serialized", "name", "message", "stack"}, output
    assert output["__serialized"] is True
    assert (output["name"], output["message"]) == (name, message)
    assert output["stack"].startswith(f"{name}: {message}")


# function, its event data -> (error name, message, Python SDKs' code) of the user's error
USER_ERRORS = {
    "non-retriable": ({}, "NonRetriableError", "no retry please", "non_retriable_error"),
    "retry": ({"fail_times": 99}, "ValueError", "flaky failure on attempt 3", "step_errored"),
}


@pytest.mark.parametrize("fn", sorted(USER_ERRORS))
def test_user_errors(app: App, api: Api, fn: str) -> None:
    data, name, message, code = USER_ERRORS[fn]
    run = _failed(api, app, fn, data)
    output = run["output"]
    if app.kind == "js":
        # JS throws `Error` where the Python functions raise ValueError
        _assert_js_error(output, "Error" if name == "ValueError" else name, message)
    else:
        assert output == {"code": code, "message": message, "name": name, "stack": output["stack"]}
        assert name in output["stack"]
    assert json.loads(_gql_output(api, run["run_id"])) == output


def test_invoke_timeout(app: App, api: Api) -> None:
    data = {"mode": "timeout", "child_sleep_s": 30, "timeout_s": 1, "reraise": True}
    output = _failed(api, app, "invoke", data)["output"]
    message = "Timed out waiting for invoked function to complete"
    if app.kind == "js":
        assert (output["name"], output["message"]) == ("InngestInvokeTimeoutError", message), output
        assert output["__serialized"] is True
    else:
        # the step's error came from the server, without a stack: null is kept
        assert output == {
            "code": "step_errored",
            "message": message,
            "name": "InngestInvokeTimeoutError",
            "stack": None,
        }


# Errors the Python SDKs raise themselves, by function: the official SDK's test expectations.
SDK_ERRORS = {
    "unexpected-step": {
        "code": "step_unexpected",
        "message": 'found step "unexpected" when targeting a different step',
        "name": "StepUnexpectedError",
        "stack": None,
    },
    "parallel-disappears": {
        "code": "step_unexpected",
        "message": 'found step "after" when targeting a different step',
        "name": "StepUnexpectedError",
        "stack": None,
    },
    "unserializable": {
        "code": "output_unserializable",
        "message": '"step_1" returned unserializable data',
        "name": "OutputUnserializableError",
    },
}


@pytest.mark.parametrize("app", PY_APPS, indirect=True)
@pytest.mark.parametrize("fn", sorted(SDK_ERRORS))
def test_errors_the_sdk_raises_itself(app: App, api: Api, fn: str) -> None:
    assert _failed(api, app, fn)["output"] == SDK_ERRORS[fn]
