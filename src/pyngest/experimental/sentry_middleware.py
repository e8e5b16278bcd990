"""Sentry middleware (FEATURES.md §15.4): tags each request with the app, function, event and
run, captures function and step errors, and flushes before the response.

Needs ``sentry_sdk`` (``pip install sentry-sdk``), initialized as usual.
"""

from __future__ import annotations

from typing import Any

try:
    import sentry_sdk
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Sentry middleware needs sentry_sdk: pip install sentry-sdk") from exc

from pyngest.sdk.client import Inngest
from pyngest.sdk.function import Function
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import MiddlewareSync, TransformOutputResult


class SentryMiddleware(MiddlewareSync):
    """``Inngest(middleware=[SentryMiddleware])``."""

    def __init__(self, client: Inngest, raw_request: object) -> None:
        super().__init__(client, raw_request)
        if not sentry_sdk.is_initialized():
            client.logger.warning("Sentry SDK is not initialized: call sentry_sdk.init(...) first")
        sentry_sdk.set_tag("inngest.app.id", client.app_id)

    def transform_input(self, ctx: Any, function: Function[Any], steps: StepMemos) -> None:
        sentry_sdk.set_tag("inngest.event.count", len(ctx.events))
        sentry_sdk.set_tag("inngest.event.id", ctx.event.id)
        sentry_sdk.set_tag("inngest.event.name", ctx.event.name)
        sentry_sdk.set_tag("inngest.function.id", function.local_id)
        sentry_sdk.set_tag("inngest.function.name", function.name)
        sentry_sdk.set_tag("inngest.run.id", ctx.run_id)

    def transform_output(self, result: TransformOutputResult) -> None:
        if result.error is not None:
            sentry_sdk.capture_exception(result.error)

    def before_response(self) -> None:
        sentry_sdk.flush()
