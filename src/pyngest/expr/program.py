"""Compiled expressions: compile once (per shape), evaluate many times.

``compile(source)`` parses, checks names, lifts literals and finds the *shape* (the expression
with its literals replaced by ``_lit`` slots). A shape owns the C++ programs, one per presence
pattern of its attribute paths (see ``lowering.py``), built the first time a pattern is seen.
Evaluating resolves each path in the input once, picks the pattern's program and passes only
the values the program reads.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pyngest.clock import Clock, RealClock
from pyngest.expr import lowering
from pyngest.expr.functions import new_environment
from pyngest.expr.lowering import MISSING, NULL, VALUE, Path, Unknown
from pyngest.expr.parser import parse
from pyngest.expr.syntax import LIT_VAR, NOW_VAR, ExpressionError, Node, unparse
from pyngest.expr.syntax import Literal as LiteralNode

_ENV = new_environment()
_DEFAULT_CLOCK: Clock = RealClock()
_ABSENT = object()
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation produced.

    ``kind`` is "value" (``value`` holds it), "unknown" (the result depended on a missing
    field, which upstream treats as no match) or "error" (``error`` says why).
    """

    kind: Literal["value", "unknown", "error"]
    value: Any = None
    error: str | None = None


_UNKNOWN = Outcome("unknown")


@dataclass(frozen=True, slots=True)
class _Variant:
    static: Outcome | None
    program: Any  # cel Expression
    reads: tuple[int, ...]  # indices into Shape.paths of values the program reads
    needs_lit: bool
    needs_now: bool
    text: str


class Shape:
    """An expression with its literals lifted out; shared by every program of that shape."""

    __slots__ = ("key", "tree", "paths", "uses_now", "_variants")

    def __init__(self, key: str, tree: Node) -> None:
        self.key = key
        self.tree = tree
        self.paths: tuple[Path, ...] = lowering.paths_of(tree)
        self.uses_now = lowering.uses_now(tree)
        self._variants: dict[tuple[int, ...], _Variant] = {}

    def variant(self, pattern: tuple[int, ...]) -> _Variant:
        found = self._variants.get(pattern)
        if found is None:
            found = self._variants[pattern] = self._build(pattern)
        return found

    def _build(self, pattern: tuple[int, ...]) -> _Variant:
        lowered = lowering.lower(self.tree, dict(zip(self.paths, pattern, strict=True)))
        if isinstance(lowered, Unknown):
            return _Variant(_UNKNOWN, None, (), False, False, "")
        if isinstance(lowered, LiteralNode):
            return _Variant(Outcome("value", lowered.value), None, (), False, False, "")
        text = unparse(lowered)
        try:
            program = _ENV.compile(text)
        except RuntimeError as exc:
            # Only a pattern's own rewrite can fail here (the all-present one was checked when
            # the shape was compiled); every evaluation with this pattern is then an error.
            return _Variant(
                Outcome("error", error=_checker_message(exc)),
                None,
                (),
                False,
                False,
                text,
            )
        index = {p: i for i, p in enumerate(self.paths)}
        reads = tuple(index[p] for p in lowering.used_paths(lowered) if pattern[index[p]] == VALUE)
        return _Variant(
            None,
            program,
            reads,
            lowering.mentions(lowered, LIT_VAR),
            lowering.mentions(lowered, NOW_VAR),
            text,
        )


class Program:
    """A compiled expression. Immutable; safe to share and to cache."""

    __slots__ = ("source", "shape", "literals")

    def __init__(self, source: str, shape: Shape, literals: Mapping[str, object]) -> None:
        self.source = source
        self.shape = shape
        self.literals = literals

    def __repr__(self) -> str:
        return f"Program({self.source!r})"

    def run(
        self,
        *,
        event: Mapping[str, Any] | None = None,
        async_: Mapping[str, Any] | None = None,
        vars: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> Outcome:
        """Evaluate against ``event`` (the triggering event), ``async_`` (the incoming event
        a pause is matched with) and ``vars``; ``now()`` reads ``clock`` (default: real time)."""
        roots = {"event": event, "async": async_, "vars": vars}
        shape = self.shape
        values: list[object] = []
        pattern: list[int] = []
        for path in shape.paths:
            value = _resolve(roots, path)
            values.append(value)
            pattern.append(MISSING if value is _ABSENT else NULL if value is None else VALUE)
        variant = shape.variant(tuple(pattern))
        if variant.static is not None:
            return variant.static
        data: dict[str, Any] = {}
        for i in variant.reads:
            _place(data, shape.paths[i], values[i])
        if variant.needs_lit:
            data[LIT_VAR] = self.literals
        if variant.needs_now:
            now_ms = (clock or _DEFAULT_CLOCK).now_ms()
            data[NOW_VAR] = datetime.fromtimestamp(now_ms / 1000, UTC)
        try:
            result = variant.program.eval(data=data)
            kind = result.type().name()
            if kind == "ERROR":
                return Outcome("error", error=str(result.value()))
            if kind == "UNKNOWN":
                return _UNKNOWN
            return Outcome("value", result.plain_value())
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            return Outcome("error", error=str(exc))

    def evaluate(self, **inputs: Any) -> Any:
        """The expression's value, or None when it errors or depends on a missing field."""
        return self.run(**inputs).value

    def matches(self, **inputs: Any) -> bool:
        """True only when the expression evaluates to the bool ``true`` (upstream's boolean
        evaluator treats any other result, errors and unknowns as no match)."""
        outcome = self.run(**inputs)
        return outcome.kind == "value" and outcome.value is True


def _resolve(roots: Mapping[str, Any], path: Path) -> object:
    value: Any = roots.get(path[0])
    if value is None:
        return _ABSENT
    for key in path[1:]:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(key, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def _place(data: dict[str, Any], path: Path, value: object) -> None:
    """Put ``value`` at ``path`` in ``data``, creating the maps on the way."""
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


# ---------------------------------------------------------------------------------------------
# Compiling, with caches


_SHAPES: OrderedDict[str, Shape] = OrderedDict()
_PROGRAMS: OrderedDict[str, Program] = OrderedDict()
SHAPE_CACHE_SIZE = 10_000
PROGRAM_CACHE_SIZE = 50_000


def _remember(cache: OrderedDict[str, _V], key: str, value: _V, limit: int) -> _V:
    cache[key] = value
    if len(cache) > limit:
        cache.popitem(last=False)
    return value


def compile(source: str) -> Program:
    """Compile ``source`` (cached by text). Raises ExpressionError with an actionable message."""
    cached = _PROGRAMS.get(source)
    if cached is not None:
        _PROGRAMS.move_to_end(source)
        return cached
    tree = parse(source)
    lowering.check(tree, source)
    lifted = lowering.lift(tree)
    key = unparse(lifted.shape)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = Shape(key, lifted.shape)
        # Check the pattern with every path present now, so a bad expression fails here.
        checked = shape.variant((VALUE,) * len(shape.paths))
        if checked.static is not None and checked.static.kind == "error":
            raise ExpressionError(f"invalid expression {source!r}: {checked.static.error}")
        _remember(_SHAPES, key, shape, SHAPE_CACHE_SIZE)
    else:
        _SHAPES.move_to_end(key)
    program = Program(source, shape, dict(zip(lifted.slots, lifted.values, strict=True)))
    return _remember(_PROGRAMS, source, program, PROGRAM_CACHE_SIZE)


def validate(source: str) -> None:
    """Raise ExpressionError if ``source`` is not an expression Inngest accepts."""
    compile(source)


_CHECKER_NOISE = re.compile(r"^(?:[A-Z_]+: )?(?:ERROR: )?<input>:\d+:\d+: ")


def _checker_message(exc: Exception) -> str:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _CHECKER_NOISE.sub("", first).replace("(in container '')", "").strip()
