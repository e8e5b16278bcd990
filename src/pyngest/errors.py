"""``from pyngest.errors import NonRetriableError`` (as the docs' ``from inngest.errors import``)."""

from pyngest.sdk.errors import (
    Error,
    NonRetriableError,
    RetryAfterError,
    SendEventsError,
    StepError,
)

__all__ = ["Error", "NonRetriableError", "RetryAfterError", "SendEventsError", "StepError"]
