"""Splitting a condition into parts an index can look up.

A condition becomes a formula of ``And``/``Or`` over leaves:

- ``Eq``: ``<path> == <literal>`` (also ``<literal> == <path>`` and each item of
  ``<path> in [<literals>]``): a hash lookup on the path's value;
- ``IsNull``: ``<path> == null``, true when the path is null or missing;
- ``Range``: ``<path> < <= > >= <number or string>``: a sorted lookup;
- ``Opaque``: anything else, which only the full evaluation can decide.

``<path>`` is a field path under the index's variable (``async`` for pauses, ``event`` for
function triggers). Each leaf's ``test`` follows the evaluator's semantics exactly for that
shape, including upstream's missing-field rules (``missing < 5`` is true), so a formula that
is false for an event is false for the full expression too; the index relies on that to skip
expressions without evaluating them, and confirms what remains with the compiled program.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from pyngest.expr.analysis import Path, attribute_path
from pyngest.expr.syntax import Call, Lifted, ListExpr, Literal, Node

ABSENT: Any = object()  # a path the event does not have


def walk(value: Any, path: Path, start: int = 1) -> object:
    """The value at ``path[start:]`` inside ``value``, or ABSENT. Only maps are walked into,
    as upstream's Data.Get: a key under a list, string or null is absent."""
    for key in path[start:]:
        if type(value) is not dict and not isinstance(value, Mapping):
            return ABSENT
        value = value.get(key, ABSENT)
        if value is ABSENT:
            return ABSENT
    return value


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
_NUMBER_KINDS = frozenset({"int", "uint", "double"})
_EQ_KINDS = frozenset({"int", "uint", "double", "string", "bytes", "bool"})


def eq_key(value: object) -> Hashable | None:
    """A hash key under which CEL-equal scalars meet (1 and 1.0 do; true and 1 do not)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return None if math.isnan(value) else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, bytes | bytearray):
        return ("y", bytes(value))
    return None


def order_class(value: object) -> str | None:
    """'n' for numbers, 's' for strings: the values CEL orders against a literal of that kind."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "n"
    if isinstance(value, float):
        return None if math.isnan(value) else "n"
    if isinstance(value, str):
        return "s"
    return None


def compare(left: Any, op: str, right: Any) -> bool:
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


@dataclass(frozen=True, slots=True)
class Eq:
    path: Path
    key: Hashable

    def test(self, value: object) -> bool:
        return value is not ABSENT and value is not None and eq_key(value) == self.key


@dataclass(frozen=True, slots=True)
class IsNull:
    path: Path

    def test(self, value: object) -> bool:
        return value is ABSENT or value is None


@dataclass(frozen=True, slots=True)
class Range:
    """``<path> <op> <bound>`` with the path on the left."""

    path: Path
    op: str
    bound: int | float | str

    @property
    def order(self) -> str:
        return "s" if isinstance(self.bound, str) else "n"

    @property
    def fires_when_missing(self) -> bool:
        # upstream: an unknown left operand of < or <= is "less than anything"
        return self.op in ("<", "<=")

    @property
    def fires_when_null(self) -> bool:
        # upstream compares a null against the other side's zero value
        zero: int | str = "" if isinstance(self.bound, str) else 0
        return compare(zero, self.op, self.bound)

    def test(self, value: object) -> bool:
        if value is ABSENT:
            return self.fires_when_missing
        if value is None:
            return self.fires_when_null
        return order_class(value) == self.order and compare(value, self.op, self.bound)


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Formula, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Formula, ...]


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


@dataclass(frozen=True, slots=True)
class Opaque:
    pass


Leaf: TypeAlias = Eq | IsNull | Range
Formula: TypeAlias = Eq | IsNull | Range | And | Or | Const | Opaque
OPAQUE = Opaque()


@dataclass(frozen=True, slots=True)
class _Compare:
    """A comparison whose literal may still be a ``_lit`` slot (``slot`` set, ``value`` unused)."""

    path: Path
    op: str
    kind: str
    slot: str | None
    value: object


@dataclass(frozen=True, slots=True)
class _InList:
    path: Path
    items: tuple[tuple[str, str | None, object], ...]  # (kind, slot, value)


@dataclass(frozen=True, slots=True)
class _Combine:
    op: str  # "&&" or "||"
    parts: tuple[Template, ...]


Template: TypeAlias = _Compare | _InList | _Combine | Const | Opaque


def template(tree: Node, variable: str) -> Template:
    """The formula of a shape, with its literals still slots; computed once per shape."""

    def operand(node: Node) -> tuple[str, str | None, object] | None:
        if isinstance(node, Lifted):
            return node.kind, node.slot, None
        if isinstance(node, Literal):
            return node.kind, None, node.value
        return None

    def field(node: Node) -> Path | None:
        path = attribute_path(node, frozenset())
        return path if path is not None and path[0] == variable else None

    def visit(node: Node) -> Template:
        if isinstance(node, Literal) and node.kind == "bool":
            return Const(bool(node.value))
        if not isinstance(node, Call) or node.target is not None:
            return OPAQUE
        fn, args = node.function, node.args
        if fn in ("&&", "||"):
            return _Combine(fn, tuple(visit(a) for a in args))
        if fn in _FLIP and len(args) == 2:
            left, right = args
            if field(left) is None and field(right) is not None:
                left, right, fn = right, left, _FLIP[fn]
            path, lit = field(left), operand(right)
            if path is None or lit is None:
                return OPAQUE
            return _Compare(path, fn, *lit)
        if fn == "in" and len(args) == 2 and isinstance(args[1], ListExpr):
            path = field(args[0])
            items = [operand(i) for i in args[1].items]
            if path is None or any(i is None or i[0] not in _EQ_KINDS for i in items):
                return OPAQUE
            return _InList(path, tuple(i for i in items if i is not None))
        return OPAQUE

    return visit(tree)


def instantiate(t: Template, literals: Mapping[str, object]) -> Formula:
    """The formula of one expression of the shape, given its literal values."""
    if isinstance(t, _Compare):
        value = literals[t.slot] if t.slot is not None else t.value
        return _comparison(t.path, t.op, t.kind, value)
    if isinstance(t, _InList):
        keys = []
        for _kind, slot, value in t.items:
            key = eq_key(literals[slot] if slot is not None else value)
            if key is None:
                return OPAQUE
            keys.append(Eq(t.path, key))
        return Or(tuple(keys))
    if isinstance(t, _Combine):
        return (And if t.op == "&&" else Or)(
            _flatten(t.op, [instantiate(p, literals) for p in t.parts])
        )
    return t


def normalize(tree: Node, variable: str, literals: Mapping[str, object]) -> Formula:
    """The formula for ``tree``, whose lifted literals have the values in ``literals``."""
    return instantiate(template(tree, variable), literals)


def _comparison(path: Path, op: str, kind: str, value: object) -> Formula:
    if op == "==":
        if kind == "null":
            return IsNull(path)
        key = eq_key(value) if kind in _EQ_KINDS else None
        return OPAQUE if key is None else Eq(path, key)
    if kind in _NUMBER_KINDS and isinstance(value, int | float) and not math.isnan(value):
        return Range(path, op, value)
    if kind == "string" and isinstance(value, str):
        return Range(path, op, value)
    return OPAQUE


def _flatten(fn: str, parts: list[Formula]) -> tuple[Formula, ...]:
    kind = And if fn == "&&" else Or
    out: list[Formula] = []
    for p in parts:
        out.extend(p.parts if isinstance(p, kind) else (p,))
    return tuple(out)


def may_match(formula: Formula, value_at: Callable[[Path], object]) -> bool:
    """False only when the expression cannot be true for the event ``value_at`` reads."""
    if isinstance(formula, Eq | IsNull | Range):
        return formula.test(value_at(formula.path))
    if isinstance(formula, And):
        return all(may_match(p, value_at) for p in formula.parts)
    if isinstance(formula, Or):
        return any(may_match(p, value_at) for p in formula.parts)
    if isinstance(formula, Const):
        return formula.value
    return True


def anchors(formula: Formula) -> list[Leaf] | None:
    """Leaves such that the expression can only be true if one of them is.

    ``None`` means no such set exists (the expression must be evaluated for every event);
    an empty list means it is never true. For ``&&`` one part suffices, so we pick the part
    whose leaves fire least often: equality before null tests before ranges.
    """
    if isinstance(formula, Eq | IsNull | Range):
        return [formula]
    if isinstance(formula, Const):
        return None if formula.value else []
    if isinstance(formula, And):
        options = [anchors(p) for p in formula.parts]
        if any(o == [] for o in options):
            return []
        usable = [o for o in options if o is not None]
        return min(usable, key=_breadth) if usable else None
    if isinstance(formula, Or):
        found: list[Leaf] = []
        for p in formula.parts:
            sub = anchors(p)
            if sub is None:
                return None
            found.extend(sub)
        return found
    return None


def _breadth(leaves: list[Leaf]) -> int:
    cost = 0
    for leaf in leaves:
        if isinstance(leaf, Eq):
            cost += 1
        elif isinstance(leaf, IsNull):
            cost += 8
        else:
            cost += 64 if leaf.fires_when_missing else 32
    return cost
