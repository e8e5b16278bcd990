"""Wrong configuration fails early, with a message that says what to change."""

from __future__ import annotations

import datetime
from typing import Any

import fastapi
import pytest

import pyngest as inngest
import pyngest.fast_api
from pyngest.sdk import errors

client = inngest.Inngest(app_id="cfg", is_production=False)


def _fn(**kw: Any) -> Any:
    kw.setdefault("trigger", inngest.TriggerEvent(event="e"))

    async def handler(ctx: inngest.Context) -> None:
        return None

    return client.create_function(fn_id=kw.pop("fn_id", "f"), **kw)(handler)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: inngest.Concurrency(limit="3"), "Concurrency.limit: expected an int"),  # type: ignore[arg-type]
        (lambda: inngest.Concurrency(limit=1, scope="region"), "expected 'fn', 'env' or 'account'"),  # type: ignore[arg-type]
        (lambda: inngest.Debounce(period="5m"), "Debounce.period: expected milliseconds"),  # type: ignore[arg-type]
        (lambda: inngest.Singleton(mode="drop"), "expected 'skip' or 'cancel'"),  # type: ignore[arg-type]
        (lambda: inngest.Throttle(period=1000), "needs limit \\(or count\\) and period"),
        (lambda: inngest.TriggerEvent(event=None), "TriggerEvent.event: expected a string"),  # type: ignore[arg-type]
        (lambda: _fn(trigger=[]), "at least one trigger is required"),
        (lambda: _fn(trigger="app/x"), "a trigger must be inngest.TriggerEvent"),
        (lambda: _fn(retries=-1), "retries must be an int from 0 to 20"),
        (lambda: _fn(trigger=None), "pass trigger=inngest.TriggerEvent"),
    ],
)
def test_bad_options(make: Any, message: str) -> None:
    with pytest.raises(errors.FunctionConfigInvalidError, match=message):
        make()


def test_bad_durations_are_reported_at_registration() -> None:
    fn = _fn(debounce=inngest.Debounce(period=500))
    with pytest.raises(errors.FunctionConfigInvalidError, match="at least 1 second"):
        fn.get_config("http://app/api/inngest")
    fn = _fn(rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(milliseconds=1500)))
    with pytest.raises(errors.FunctionConfigInvalidError, match="whole number of seconds"):
        fn.get_config("http://app/api/inngest")


def test_serve_checks_its_functions() -> None:
    with pytest.raises(errors.Error, match="functions made with @client.create_function"):
        pyngest.fast_api.serve(fastapi.FastAPI(), client, [lambda ctx: None])  # type: ignore[list-item]
    with pytest.raises(errors.FunctionConfigInvalidError, match="two functions have the id 'same'"):
        pyngest.fast_api.serve(fastapi.FastAPI(), client, [_fn(fn_id="same"), _fn(fn_id="same")])


def test_on_failure_must_match_the_handler_kind() -> None:
    def sync_failure(ctx: inngest.ContextSync) -> None:
        return None

    with pytest.raises(errors.Error, match="an async function cannot have a non-async on_failure handler"):
        _fn(on_failure=sync_failure)


def test_missing_app_id() -> None:
    with pytest.raises(errors.Error, match="app_id must be a non-empty string"):
        inngest.Inngest(app_id="")
