"""The server's door to the expression layer (:mod:`pyngest.expr`).

Everything the server evaluates — trigger ``if``, waitForEvent and cancelOn conditions, keys of
flow control — goes through here. ``now()`` in expressions reads the server's clock.
"""

from __future__ import annotations

from typing import Any

from pyngest import expr
from pyngest.clock import Clock
from pyngest.expr import ExpressionError, PauseIndex, TriggerIndex

__all__ = [
    "ExpressionError", "Condition", "PauseIndex", "TriggerIndex", "compile_condition", "evaluate",
    "interpolate", "is_constant_false", "match_expression", "set_clock",
]

_clock: Clock | None = None


def set_clock(clock: Clock) -> None:
    """The clock ``now()`` reads (the service's; a test clock in tests)."""
    global _clock
    _clock = clock


def clock() -> Clock | None:
    return _clock


class Condition:
    """A compiled boolean expression; evaluation errors and missing fields mean "no match"."""

    __slots__ = ("source", "_program")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = expr.compile(source)

    def matches(self, *, event: dict[str, Any] | None = None, async_: dict[str, Any] | None = None) -> bool:
        return self._program.matches(event=event, async_=async_, clock=_clock)


def compile_condition(source: str) -> Condition:
    """Compile (cached by the expression layer); raises ExpressionError with a readable message."""
    return Condition(source)


def interpolate(source: str, event: dict[str, Any]) -> str:
    """Replace ``event.*`` references with the triggering event's literal values."""
    return expr.interpolate(source, event)


def is_constant_false(source: str) -> bool:
    """An interpolated condition that can never match (no pause needs storing)."""
    return expr.is_constant_false(source)


def match_expression(field: str) -> str:
    """``match: "data.userId"`` sugar → ``event.data.userId == async.data.userId``."""
    return expr.match_expression(field)


def evaluate(source: str, *, event: dict[str, Any] | None = None) -> Any:
    """The value of an expression (for keys and priorities); None when it cannot be evaluated."""
    return expr.compile(source).evaluate(event=event, clock=_clock)
