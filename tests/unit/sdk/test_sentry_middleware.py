"""The Sentry middleware tags requests and captures errors (with a stand-in ``sentry_sdk``)."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import pytest

import pyngest as inngest
from pyngest.experimental import mocked


def test_sentry_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("sentry_sdk")
    fake.is_initialized = lambda: True  # type: ignore[attr-defined]
    fake.set_tag = lambda k, v: calls.append(("tag", (k, v)))  # type: ignore[attr-defined]
    fake.capture_exception = lambda e: calls.append(("capture", type(e).__name__))  # type: ignore[attr-defined]
    fake.flush = lambda: calls.append(("flush", None))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentry_sdk", fake)
    monkeypatch.delitem(sys.modules, "pyngest.experimental.sentry_middleware", raising=False)
    mod = importlib.import_module("pyngest.experimental.sentry_middleware")

    client = mocked.Inngest(app_id="sentry-app", middleware=[mod.SentryMiddleware])

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="e"), retries=0)
    def f(ctx: inngest.ContextSync) -> None:
        raise ValueError("boom")

    res = mocked.trigger(f, inngest.Event(name="e", id="ev-1"), client)
    assert res.status is mocked.Status.FAILED
    tags = dict(v for k, v in calls if k == "tag")
    assert tags["inngest.app.id"] == "sentry-app" and tags["inngest.function.id"] == "f"
    assert tags["inngest.event.name"] == "e" and tags["inngest.event.id"] == "ev-1"
    assert ("capture", "ValueError") in calls and ("flush", None) in calls
