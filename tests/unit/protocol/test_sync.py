from pyngest.protocol.sync import decode_register, max_attempts, validate_function


def python_sdk_style_payload() -> dict:
    return {
        "appname": "my-app",
        "deploy_type": "ping",
        "framework": "fast_api",
        "sdk": "py:v0.5.19",
        "url": "http://localhost:8000/api/inngest",
        "v": "0.1",
        "functions": [
            {
                "id": "my-app-fn",
                "name": "fn",
                "triggers": [{"event": "app/x"}],
                "batchEvents": None,
                "rateLimit": None,
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "runtime": {"type": "http", "url": "http://localhost:8000/api/inngest?fnId=my-app-fn&stepId=step"},
                        "retries": {"attempts": 2},
                    }
                },
            }
        ],
    }


def test_field_names_match_case_insensitively() -> None:
    req = decode_register(python_sdk_style_payload())
    assert req["appName"] == "my-app"
    assert req["deployType"] == "ping"
    fn, errors = validate_function(req["functions"][0])
    assert errors == []
    assert fn is not None and max_attempts(fn) == 3


def test_validation_collects_actionable_errors() -> None:
    raw = python_sdk_style_payload()["functions"][0]
    raw["triggers"] = "app/event"
    raw["concurrency"] = [{"limit": 1, "scope": "env"}]
    raw["batchEvents"] = {"maxSize": 10, "timeout": "5s"}
    raw["debounce"] = {"period": "1s"}
    fn, errors = validate_function(raw)
    assert "triggers must be a list" in errors
    assert any("concurrency key is required" in e for e in errors)
    assert "A function cannot specify batch and debounce" in errors


def test_a_function_without_triggers_is_invoke_only_and_valid() -> None:
    # the npm SDK sends `triggers: []` for a function that is only ever invoked; upstream
    # accepts it (and an absent list the same way)
    for triggers in ([], None):
        raw = python_sdk_style_payload()["functions"][0]
        raw["triggers"] = triggers
        fn, errors = validate_function(raw)
        assert errors == [] and fn is not None and fn["triggers"] == []


def test_a_function_without_a_name_is_refused_as_upstream_does() -> None:
    raw = python_sdk_style_payload()["functions"][0]
    del raw["name"]
    _, errors = validate_function(raw)
    assert "A function name is required" in errors


def test_retries_are_clamped_to_twenty() -> None:
    raw = python_sdk_style_payload()["functions"][0]
    raw["steps"]["step"]["retries"] = {"attempts": 99}
    fn, errors = validate_function(raw)
    assert not errors and fn is not None and max_attempts(fn) == 21
