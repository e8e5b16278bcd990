"""Compiled expressions and how they are evaluated.

A ``Shape`` is an expression with its literals replaced by ``_lit`` slots; it owns the C++
programs, one per presence pattern of its attribute paths (see ``lowering.py``), each built
the first time the pattern is seen. A ``Program`` is a shape plus literal values. Evaluating
resolves each path in the input once, picks the pattern's program and passes only the values
that program reads. ``compiler.py`` makes programs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cel_expr_python import cel

from pyngest.clock import Clock, RealClock
from pyngest.expr import analysis, lowering, predicates
from pyngest.expr.analysis import Path
from pyngest.expr.functions import new_environment
from pyngest.expr.lowering import MISSING, NULL, VALUE, Unknown
from pyngest.expr.syntax import (
    INTERNAL_PREFIX,
    LIT_VAR,
    LITS_VAR,
    NOW_VAR,
    Call,
    Ident,
    Index,
    Lifted,
    Node,
    unparse,
)
from pyngest.expr.syntax import Literal as LiteralNode

ENV = new_environment()
_DEFAULT_CLOCK: Clock = RealClock()
_ABSENT = predicates.ABSENT


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
_TRUE_OUTCOME = Outcome("value", True)
_FALSE_OUTCOME = Outcome("value", False)
_ERROR_TYPE = cel.Type.ERROR
_UNKNOWN_TYPE = cel.Type.UNKNOWN


@dataclass(frozen=True, slots=True)
class _Variant:
    static: Outcome | None
    program: Any  # cel Expression
    reads: tuple[int, ...]  # indices into Shape.paths of values the program reads
    needs_lit: bool
    needs_now: bool
    tree: Node | None  # the rewritten expression


_BATCH_ITEM = Ident(INTERNAL_PREFIX + "l")


class Shape:
    """An expression with its literals lifted out; shared by every program of that shape."""

    __slots__ = ("key", "tree", "slots", "paths", "uses_now", "_variants", "_batches", "_formulas")

    def __init__(self, key: str, tree: Node, slots: tuple[str, ...]) -> None:
        self.key = key
        self.tree = tree
        self.slots = slots
        self.paths: tuple[Path, ...] = analysis.paths_of(tree)
        self.uses_now = analysis.uses_now(tree)
        self._variants: dict[tuple[int, ...], _Variant] = {}
        self._batches: dict[tuple[int, ...], Any] = {}
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

    def prepare(
        self,
        event: Mapping[str, Any] | None,
        async_: Mapping[str, Any] | None,
        vars: Mapping[str, Any] | None,
        clock: Clock | None,
    ) -> tuple[_Variant, tuple[int, ...], dict[str, Any]]:
        """The inputs' presence pattern, its program, and the data it reads (no literals)."""
        roots = {"event": event, "async": async_, "vars": vars}
        values: list[object] = []
        pattern: list[int] = []
        for path in self.paths:
            value = _resolve(roots, path)
            values.append(value)
            pattern.append(MISSING if value is _ABSENT else NULL if value is None else VALUE)
        key = tuple(pattern)
        variant = self.variant(key)
        data: dict[str, Any] = {}
        if variant.static is None:
            placed: list[Path] = []
            for i in variant.reads:  # shortest paths first (see _build)
                path = self.paths[i]
                # a.b placed whole already holds a.b.c; and writing into it would write
                # into the caller's event
                if not any(path[: len(p)] == p for p in placed):
                    _place(data, path, values[i])
                    placed.append(path)
            if variant.needs_now:
                now_ms = (clock or _DEFAULT_CLOCK).now_ms()
                data[NOW_VAR] = datetime.fromtimestamp(now_ms / 1000, UTC)
        return variant, key, data

    def batch(self, pattern: tuple[int, ...]) -> Any:
        """The pattern's program mapped over ``_lits``: one evaluation for many literal sets
        (None if it cannot be built; callers then evaluate one by one). Each item of
        ``_lits`` is the literal itself when the shape has one, else the list of them."""
        if pattern not in self._batches:
            tree = self.variant(pattern).tree
            program = None
            if tree is not None:
                each = _literals_from(tree, _BATCH_ITEM, {s: i for i, s in enumerate(self.slots)})
                text = unparse(Call("map", (_BATCH_ITEM, each), target=Ident(LITS_VAR)))
                try:
                    program = ENV.compile(text)
                except RuntimeError:
                    program = None
            self._batches[pattern] = program
        return self._batches[pattern]

    def batch_items(self, programs: Sequence[Program]) -> list[object]:
        if len(self.slots) == 1:
            return [p.values[0] for p in programs]
        return [list(p.values) for p in programs]

    def _build(self, pattern: tuple[int, ...]) -> _Variant:
        result = lowering.lower(self.tree, dict(zip(self.paths, pattern, strict=True)))
        if isinstance(result, Unknown):
            return _Variant(_UNKNOWN, None, (), False, False, None)
        lowered = lowering.materialize(result)
        if isinstance(lowered, LiteralNode):
            return _Variant(Outcome("value", lowered.value), None, (), False, False, None)
        text = unparse(lowered)
        try:
            program = ENV.compile(text)
        except RuntimeError as exc:
            # Only a pattern's own rewrite can fail here (the all-present one was checked when
            # the shape was compiled); every evaluation with this pattern is then an error.
            error = Outcome("error", error=_checker_message(exc))
            return _Variant(error, None, (), False, False, None)
        index = {p: i for i, p in enumerate(self.paths)}
        read = [p for p in analysis.paths_of(lowered) if pattern[index[p]] == VALUE]
        reads = tuple(index[p] for p in sorted(read, key=len))
        return _Variant(
            None,
            program,
            reads,
            analysis.mentions(lowered, LIT_VAR),
            analysis.mentions(lowered, NOW_VAR),
            lowered,
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
        variant, _, data = self.shape.prepare(event, async_, vars, clock)
        if variant.static is not None:
            return variant.static
        if variant.needs_lit:
            data[LIT_VAR] = dict(zip(self.shape.slots, self.values, strict=True))
        return _outcome(variant.program, data)

    def evaluate(self, **inputs: Any) -> Any:
        """The expression's value, or None when it errors or depends on a missing field."""
        return self.run(**inputs).value

    def matches(self, **inputs: Any) -> bool:
        """True only when the expression evaluates to the bool ``true`` (upstream's boolean
        evaluator treats any other result, errors and unknowns as no match)."""
        outcome = self.run(**inputs)
        return outcome.kind == "value" and outcome.value is True


def _outcome(program: Any, data: dict[str, Any]) -> Outcome:
    try:
        result = program.eval(data=data)
        value = result.plain_value()
        if type(value) is bool:  # the usual answer; errors and unknowns are never bools
            return _TRUE_OUTCOME if value else _FALSE_OUTCOME
        kind = result.type()
        if kind == _ERROR_TYPE:
            return Outcome("error", error=str(result.value()))
        if kind == _UNKNOWN_TYPE:
            return _UNKNOWN
        return Outcome("value", value)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        return Outcome("error", error=str(exc))


# Literal sets per batched CEL call. CEL's ``map`` builds its result by copying the list
# at each item, so one call over n items costs n²: 3,000 candidates took 0.55 s in one call,
# 8 ms in calls of 32 (bench/expr_index.py --slow 3000).
BATCH_SIZE = 32


def matches_many(programs: Sequence[Program], **inputs: Any) -> list[bool]:
    """``[p.matches(**inputs) for p in programs]`` for programs of one shape, in CEL calls of
    up to ``BATCH_SIZE``.

    The presence pattern depends only on the shape and the inputs, so it is shared; only the
    literals differ, and they go in as a list. If any of them errors, CEL's ``map`` errors as
    a whole and we fall back to evaluating that call's programs one by one.
    """
    if len(programs) == 1:
        return [programs[0].matches(**inputs)]
    shape = programs[0].shape
    variant, pattern, data = shape.prepare(
        inputs.get("event"), inputs.get("async_"), inputs.get("vars"), inputs.get("clock")
    )
    if variant.static is not None:
        hit = variant.static.kind == "value" and variant.static.value is True
        return [hit] * len(programs)
    batch = shape.batch(pattern)
    if batch is None:
        return [p.matches(**inputs) for p in programs]
    found: list[bool] = []
    for start in range(0, len(programs), BATCH_SIZE):
        chunk = programs[start : start + BATCH_SIZE]
        data[LITS_VAR] = shape.batch_items(chunk)
        outcome = _outcome(batch, data)
        if outcome.kind == "value" and isinstance(outcome.value, list):
            found.extend(v is True for v in outcome.value)
        else:
            found.extend(p.matches(**inputs) for p in chunk)
    return found


def _resolve(roots: Mapping[str, Any], path: Path) -> object:
    root = roots.get(path[0])
    return _ABSENT if root is None else predicates.walk(root, path)


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


def _literals_from(node: Node, item: Ident, positions: dict[str, int]) -> Node:
    """``node`` with each ``_lit.<slot>`` read from ``item`` instead (see ``batch``)."""
    if isinstance(node, Lifted):
        if len(positions) == 1:
            return item
        return Index(item, LiteralNode(positions[node.slot], "int"))
    return analysis.rebuild(node, lambda child: _literals_from(child, item, positions))
