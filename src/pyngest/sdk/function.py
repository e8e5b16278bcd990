"""A function: its handler, its options, and how it registers (PROTOCOL.md §2.3, §5.5)."""

from __future__ import annotations

import inspect
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pyngest.sdk import errors
from pyngest.sdk.options import (
    Batch,
    Cancel,
    Checkpointing,
    CheckpointingOption,
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
from pyngest.sdk.types import EMPTY, Event, Logger

if TYPE_CHECKING:
    from pyngest.sdk.middleware import UninitializedMiddleware
    from pyngest.sdk.steps import Group, GroupSync, Step, StepSync

T = TypeVar("T")
ROOT_STEP_ID = "step"
FUNCTION_FAILED = "inngest/function.failed"


@dataclass
class Context:
    """What an async handler gets.

    Attributes:
        attempt: zero-based attempt of the current step (or function code).
        event: the triggering event (the first one, with batching).
        events: all events of the run (more than one with batching).
        group: ``group.parallel`` for parallel steps.
        job_id: the server's queue job id, if sent.
        logger: the client's logger, muted while replaying already-run code.
        request_id: the server's request id, if sent.
        run_id: the run's id.
        step: the step tools.
    """

    attempt: int
    event: Event
    events: list[Event]
    group: Group
    job_id: str | None
    logger: Logger
    request_id: str | None
    run_id: str
    step: Step


@dataclass
class ContextSync:
    """What a plain (non-async) handler gets; see :class:`Context`."""

    attempt: int
    event: Event
    events: list[Event]
    group: GroupSync
    job_id: str | None
    logger: Logger
    request_id: str | None
    run_id: str
    step: StepSync


def check_checkpointing(option: object, what: str) -> None:
    if option is not None and not isinstance(option, (bool, Checkpointing)):
        raise errors.FunctionConfigInvalidError(
            f"{what}: checkpointing must be True, False or inngest.Checkpointing(...), got {type(option).__name__}"
        )


def _takes_step(handler: Callable[..., Any]) -> bool:
    """Handlers may be ``(ctx)`` (newest official SDK) or ``(ctx, step)`` (the docs)."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _url(app_url: str, fn_id: str) -> str:
    return app_url + "?" + urllib.parse.urlencode({"fnId": fn_id, "stepId": ROOT_STEP_ID})


@dataclass
class FunctionOpts:
    app_id: str
    local_id: str
    fully_qualified_id: str
    name: str
    batch_events: Batch | None = None
    cancel: list[Cancel] | None = None
    concurrency: list[Concurrency] | None = None
    debounce: Debounce | None = None
    idempotency: str | None = None
    on_failure: Callable[..., Any] | None = None
    priority: Priority | None = None
    rate_limit: RateLimit | None = None
    retries: int | None = None
    throttle: Throttle | None = None
    timeouts: Timeouts | None = None
    singleton: Singleton | None = None
    checkpointing: CheckpointingOption = None


class Function(Generic[T]):
    """A function created with ``@client.create_function``."""

    def __init__(
        self,
        opts: FunctionOpts,
        trigger: TriggerEvent | TriggerCron | list[TriggerEvent | TriggerCron],
        handler: Callable[..., Any],
        output_type: object = EMPTY,
        middleware: list[UninitializedMiddleware] | None = None,
    ) -> None:
        triggers = trigger if isinstance(trigger, list) else [trigger]
        if not triggers:
            raise errors.FunctionConfigInvalidError(f"function {opts.local_id}: at least one trigger is required")
        for t in triggers:
            if not isinstance(t, (TriggerEvent, TriggerCron)):
                raise errors.FunctionConfigInvalidError(
                    f"function {opts.local_id}: a trigger must be inngest.TriggerEvent or inngest.TriggerCron, "
                    f"got {type(t).__name__}"
                )
        if opts.retries is not None and (isinstance(opts.retries, bool) or not isinstance(opts.retries, int) or opts.retries < 0):
            raise errors.FunctionConfigInvalidError(
                f"function {opts.local_id}: retries must be an int from 0 to 20, got {opts.retries!r}"
            )
        if opts.concurrency is not None and not isinstance(opts.concurrency, list):
            opts.concurrency = [opts.concurrency]
        if not callable(handler):
            raise errors.FunctionConfigInvalidError(f"function {opts.local_id}: the handler is not callable")
        check_checkpointing(opts.checkpointing, f"function {opts.local_id}")
        self._opts = opts
        self._triggers: list[TriggerEvent | TriggerCron] = list(triggers)
        self._handler = handler
        self._middleware = list(middleware or [])
        self._output_type = output_type
        self._handler_two_args = _takes_step(handler)
        self._on_failure_fn_id: str | None = None
        self._on_failure_two_args = False
        if opts.on_failure is not None:
            if self.is_handler_async != inspect.iscoroutinefunction(opts.on_failure):
                kind, other = ("an async", "a non-async") if self.is_handler_async else ("a non-async", "an async")
                raise errors.Error(
                    f"{kind} function cannot have {other} on_failure handler (function {opts.local_id})"
                )
            self._on_failure_fn_id = f"{opts.fully_qualified_id}-failure"
            self._on_failure_two_args = _takes_step(opts.on_failure)

    @property
    def id(self) -> str:
        """The app-prefixed id the server knows this function by."""
        return self._opts.fully_qualified_id

    @property
    def local_id(self) -> str:
        return self._opts.local_id

    @property
    def app_id(self) -> str:
        return self._opts.app_id

    @property
    def name(self) -> str:
        return self._opts.name

    @property
    def output_type(self) -> object:
        return self._output_type

    @property
    def checkpointing(self) -> CheckpointingOption:
        """This function's checkpointing option (None: the client's)."""
        return self._opts.checkpointing

    @property
    def on_failure_fn_id(self) -> str | None:
        return self._on_failure_fn_id

    @property
    def is_handler_async(self) -> bool:
        return inspect.iscoroutinefunction(self._handler)

    @property
    def is_on_failure_handler_async(self) -> bool | None:
        if self._opts.on_failure is None:
            return None
        return inspect.iscoroutinefunction(self._opts.on_failure)

    def get_id(self) -> str:
        return self.id

    def handler_for(self, fn_id: str) -> tuple[Callable[..., Any], bool, object] | None:
        """(handler, takes (ctx, step), output type) for a registered id, or None."""
        if fn_id == self.id:
            return self._handler, self._handler_two_args, self._output_type
        if fn_id == self._on_failure_fn_id and self._opts.on_failure is not None:
            return self._opts.on_failure, self._on_failure_two_args, EMPTY
        return None

    def get_config(self, app_url: str) -> list[dict[str, Any]]:
        """Registration entries: this function and, with ``on_failure``, its failure handler."""
        o = self._opts
        step: dict[str, Any] = {"id": ROOT_STEP_ID, "name": ROOT_STEP_ID}
        if o.retries is not None:
            step["retries"] = {"attempts": o.retries}
        url = _url(app_url, self.id)
        step["runtime"] = {"type": "ws" if url.startswith("wss://") else "http", "url": url}
        main: dict[str, Any] = {
            "batchEvents": o.batch_events.to_wire() if o.batch_events else None,
            "cancel": [c.to_wire() for c in o.cancel] if o.cancel is not None else None,
            "concurrency": [c.to_wire() for c in o.concurrency] if o.concurrency is not None else None,
            "debounce": o.debounce.to_wire() if o.debounce else None,
            "id": self.id,
            "idempotency": o.idempotency,
            "name": o.name,
            "priority": o.priority.to_wire() if o.priority else None,
            "rateLimit": o.rate_limit.to_wire() if o.rate_limit else None,
            "steps": {ROOT_STEP_ID: step},
            "throttle": o.throttle.to_wire() if o.throttle else None,
            "timeouts": o.timeouts.to_wire() if o.timeouts else None,
            "singleton": o.singleton.to_wire() if o.singleton else None,
            "triggers": [t.to_wire() for t in self._triggers],
        }
        out = [{k: v for k, v in main.items() if v is not None}]
        if self._on_failure_fn_id is not None:
            out.append(
                {
                    "cancel": [],
                    "concurrency": [],
                    "id": self._on_failure_fn_id,
                    "name": f"{o.name} (failure)",
                    "steps": {
                        ROOT_STEP_ID: {
                            "id": ROOT_STEP_ID,
                            "name": ROOT_STEP_ID,
                            "retries": {"attempts": 0},
                            "runtime": {"type": "http", "url": _url(app_url, self._on_failure_fn_id)},
                        }
                    },
                    "triggers": [
                        {"event": FUNCTION_FAILED, "expression": f"event.data.function_id == '{self.id}'"}
                    ],
                }
            )
        return out
