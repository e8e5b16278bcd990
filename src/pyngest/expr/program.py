"""Compiled expressions and how they are evaluated.

A ``Shape`` is an expression with its literals replaced by ``_lit`` slots; it owns the C++
programs, one per presence pattern of its attribute paths (see ``lowering.py``), each built
the first time the pattern is seen. A ``Program`` is a shape plus literal values. Evaluating
resolves each path in the input once, picks the pattern's program and passes only the values
that program reads. ``compiler.py`` makes programs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pyngest.clock import Clock, RealClock
from pyngest.expr import lowering, predicates
from pyngest.expr.functions import new_environment
from pyngest.expr.lowering import MISSING, NULL, VALUE, Path, Unknown
from pyngest.expr.syntax import LIT_VAR, NOW_VAR, Node, unparse
from pyngest.expr.syntax import Literal as LiteralNode

ENV = new_environment()
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

    __slots__ = ("key", "tree", "slots", "paths", "uses_now", "_variants", "_formulas")

    def __init__(self, key: str, tree: Node, slots: tuple[str, ...]) -> None:
        self.key = key
        self.tree = tree
        self.slots = slots
        self.paths: tuple[Path, ...] = lowering.paths_of(tree)
        self.uses_now = lowering.uses_now(tree)
        self._variants: dict[tuple[int, ...], _Variant] = {}
        self._formulas: dict[str, predicates.Template] = {}

    def formula(self, variable: str, values: tuple[object, ...]) -> predicates.Formula:
        """The index formula (``predicates``) of this shape's expression with ``values``."""
        found = self._formulas.get(variable)
        if found is None:
            found = self._formulas[variable] = predicates.template(self.tree, variable)
        return predicates.instantiate(found, dict(zip(self.slots, values, strict=True)))

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
            program = ENV.compile(text)
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
    """A compiled expression: its source, its shape and its literal values. Immutable; safe to
    share and to cache. Get one from ``compile``."""

    __slots__ = ("source", "shape", "values")

    def __init__(self, source: str, shape: Shape, values: tuple[object, ...]) -> None:
        self.source = source
        self.shape = shape
        self.values = values

    @property
    def literals(self) -> dict[str, object]:
        """The lifted literals by ``_lit`` slot name."""
        return dict(zip(self.shape.slots, self.values, strict=True))

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
            data[LIT_VAR] = dict(zip(shape.slots, self.values, strict=True))
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


_CHECKER_NOISE = re.compile(r"^(?:[A-Z_]+: )?(?:ERROR: )?<input>:\d+:\d+: ")


def _checker_message(exc: Exception) -> str:
    """The C++ checker's first line, without its position in our rewritten text."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _CHECKER_NOISE.sub("", first).replace("(in container '')", "").strip()
