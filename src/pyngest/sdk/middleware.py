"""Middleware: user hooks around a request's lifecycle (FEATURES.md §15).

Order per request: ``transform_input``, ``before_memoization``, ``after_memoization``,
``before_execution``, ``after_execution``, ``transform_output``, ``before_response``; for
sends, ``before_send_events`` and ``after_send_events``. Client middleware runs first, then
function middleware, each in list order; "after" hooks run in reverse. A middleware class is
instantiated once per request with ``(client, raw_request)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyngest.sdk import errors
from pyngest.sdk.types import EMPTY, Event, SendEventsResult

if TYPE_CHECKING:
    from pyngest.sdk.client import Inngest
    from pyngest.sdk.function import Function
    from pyngest.sdk.memos import StepMemos


@dataclass
class TransformOutputStepInfo:
    """The step whose output is being transformed; changes here are discarded."""

    id: str
    op: Any
    opts: dict[str, object] | None


@dataclass
class TransformOutputResult:
    """A step's or function's result. Changes to ``error`` and ``output`` are kept."""

    error: Exception | None
    output: object
    step: TransformOutputStepInfo | None

    def has_output(self) -> bool:
        """None is a valid output, so check this before reading ``output``."""
        return self.output is not EMPTY


class Middleware:
    """Base class for async middleware. Override the hooks you need."""

    def __init__(self, client: Inngest, raw_request: object) -> None:
        self.client = client
        self.raw_request = raw_request

    async def transform_input(self, ctx: Any, function: Function[Any], steps: StepMemos) -> None:
        """Before running the function: change ``ctx`` or the memoized step data."""

    async def before_memoization(self) -> None:
        """Before memoized step data is looked at."""

    async def after_memoization(self) -> None:
        """After the memoized step data has been used up."""

    async def before_execution(self) -> None:
        """Before "new" code runs (once per request)."""

    async def after_execution(self) -> None:
        """After the new code ran."""

    async def transform_output(self, result: TransformOutputResult) -> None:
        """After a step or the function returned: change its output."""

    async def before_response(self) -> None:
        """Just before the response goes back to the server."""

    async def before_send_events(self, events: list[Event]) -> None:
        """Before events are sent."""

    async def after_send_events(self, result: SendEventsResult) -> None:
        """After events were sent (or failed to)."""


class MiddlewareSync:
    """Base class for middleware whose hooks are plain functions (usable everywhere)."""

    def __init__(self, client: Inngest, raw_request: object) -> None:
        self.client = client
        self.raw_request = raw_request

    def transform_input(self, ctx: Any, function: Function[Any], steps: StepMemos) -> None:
        """Before running the function: change ``ctx`` or the memoized step data."""

    def before_memoization(self) -> None:
        """Before memoized step data is looked at."""

    def after_memoization(self) -> None:
        """After the memoized step data has been used up."""

    def before_execution(self) -> None:
        """Before "new" code runs (once per request)."""

    def after_execution(self) -> None:
        """After the new code ran."""

    def transform_output(self, result: TransformOutputResult) -> None:
        """After a step or the function returned: change its output."""

    def before_response(self) -> None:
        """Just before the response goes back to the server."""

    def before_send_events(self, events: list[Event]) -> None:
        """Before events are sent."""

    def after_send_events(self, result: SendEventsResult) -> None:
        """After events were sent (or failed to)."""


UninitializedMiddleware = Callable[["Inngest", object], "Middleware | MiddlewareSync"]

_ONCE = frozenset({"before_memoization", "after_memoization", "before_execution"})
_REVERSED = frozenset({"after_execution", "after_send_events", "transform_output"})


class MiddlewareManager:
    """The middleware instances of one request, and hook dispatch (async or sync)."""

    __slots__ = ("client", "raw_request", "_items", "_done")

    def __init__(self, client: Inngest, raw_request: object) -> None:
        self.client = client
        self.raw_request = raw_request
        self._items: list[Middleware | MiddlewareSync] = []
        self._done: set[str] = set()

    @classmethod
    def from_client(cls, client: Inngest, raw_request: object) -> MiddlewareManager:
        mgr = cls(client, raw_request)
        for factory in client.middleware:
            mgr.add(factory)
        return mgr

    def add(self, factory: UninitializedMiddleware) -> None:
        self._items.append(factory(self.client, self.raw_request))

    @property
    def empty(self) -> bool:
        return not self._items

    def _order(self, hook: str) -> list[Middleware | MiddlewareSync]:
        return list(reversed(self._items)) if hook in _REVERSED else self._items

    def _claim(self, hook: str) -> bool:
        """Hooks in _ONCE run at most once per request, whichever path reaches them first."""
        if hook in _ONCE:
            if hook in self._done:
                return False
            self._done.add(hook)
        return True

    async def call(self, hook: str, *args: Any) -> None:
        if not self._items or not self._claim(hook):
            return
        for m in self._order(hook):
            res = getattr(m, hook)(*args)
            if inspect.isawaitable(res):
                await res

    def call_sync(self, hook: str, *args: Any) -> None:
        if not self._items or not self._claim(hook):
            return
        for m in self._order(hook):
            fn = getattr(m, hook)
            if inspect.iscoroutinefunction(fn):
                raise errors.AsyncUnsupportedError(
                    f"middleware {type(m).__name__}.{hook} is async but the function is not: "
                    "use inngest.MiddlewareSync for non-async functions"
                )
            fn(*args)
