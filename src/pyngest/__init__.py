"""pyngest: a self-hostable, wire-compatible re-implementation of Inngest.

``import pyngest as inngest`` gives the documented Inngest Python SDK API: the client, function
options, step tools, errors and middleware. Framework adapters live in ``pyngest.fast_api``,
``pyngest.starlette``, ``pyngest.flask`` and ``pyngest.django``; in-process testing in
``pyngest.experimental.mocked``. The server is ``pyngest.server`` (CLI ``pyngest``).
"""

from pyngest import errors
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.errors import NonRetriableError, RetryAfterError, StepError
from pyngest.sdk.function import Context, ContextSync, Function
from pyngest.sdk.memos import StepMemos
from pyngest.sdk.middleware import Middleware, MiddlewareSync, TransformOutputResult
from pyngest.sdk.options import (
    Batch,
    Cancel,
    Checkpointing,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from pyngest.sdk.serializer import PydanticSerializer, Serializer
from pyngest.sdk.steps import ParallelMode, Step, StepSync
from pyngest.sdk.types import JSON, Event, SendEventsResult

# Some docs pages write inngest.Trigger(event=...) for TriggerEvent, and the create-function
# reference names the step type of plain handlers SyncStep.
Trigger = TriggerEvent
SyncStep = StepSync

__all__ = [
    "JSON",
    "Batch",
    "Cancel",
    "Checkpointing",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Event",
    "Function",
    "Inngest",
    "Middleware",
    "MiddlewareSync",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "SendEventsResult",
    "Serializer",
    "Singleton",
    "Step",
    "StepError",
    "StepMemos",
    "StepSync",
    "Streaming",
    "SyncStep",
    "Throttle",
    "Timeouts",
    "TransformOutputResult",
    "Trigger",
    "TriggerCron",
    "TriggerEvent",
    "errors",
]
