"""Interpolating a pause's condition with its run's triggering event, before the pause is stored.

Upstream (``pkg/expressions/residual.go``) partially evaluates a waitForEvent/cancelOn ``if``
with only ``event`` known and stores the residual: every ``event.*`` the event has becomes a
literal, sub-expressions that became constant are folded, and ``&&``/``||``/``?:`` with a
known side are pruned. What is left reads ``async.*`` (plus any ``event.*`` field the event
lacked, which stays as written). That is what lets the pause index look the literals up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyngest.expr import analysis
from pyngest.expr.analysis import attribute_path
from pyngest.expr.compiler import compile
from pyngest.expr.lowering import is_bool
from pyngest.expr.parser import check_length, parse
from pyngest.expr.syntax import (
    MACROS,
    Call,
    ExpressionError,
    Ident,
    Literal,
    Node,
    literal_of,
    unparse,
)

_TRUE = Literal(True, "bool")
_FALSE = Literal(False, "bool")
_CLOCK_FUNCTIONS = frozenset({"now", "now_plus", "now_minus"})


def interpolate(source: str, event: Mapping[str, Any]) -> str:
    """``source`` with each ``event.*`` reference replaced by the triggering event's value.

    >>> interpolate("event.data.userId == async.data.userId", {"data": {"userId": "u1"}})
    '"u1" == async.data.userId'
    """
    check_length(source)
    tree = parse(source)
    analysis.check(tree, source)
    return unparse(_Interpolator(event).visit(tree, frozenset()))


def match_expression(field: str) -> str:
    """The expression the ``match: "data.userId"`` shorthand stands for (JS SDK ``match``)."""
    source = f"event.{field} == async.{field}"
    try:
        analysis.check(parse(source), source)
    except ExpressionError as exc:
        raise ExpressionError(f"invalid match field {field!r}: {exc}") from None
    return source


def is_constant_false(source: str) -> bool:
    """True when ``source`` can never match whatever event arrives (e.g. a cancel condition
    whose interpolation came out as ``false``); such a pause need not be stored."""
    program = compile(source)
    if program.shape.paths or program.shape.uses_now:
        return False
    outcome = program.run()
    return outcome.kind == "value" and outcome.value is False


class _Interpolator:
    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event

    def visit(self, node: Node, bound: frozenset[str]) -> Node:
        path = attribute_path(node, bound)
        if path is not None:
            return self._substitute(node, path)
        if isinstance(node, Call) and node.function in MACROS and node.target is not None:
            var = node.args[0]
            inner = bound | {var.name} if isinstance(var, Ident) else bound
            target = self.visit(node.target, bound)
            rest = tuple(self.visit(a, inner) for a in node.args[1:])
            node = Call(node.function, (var, *rest), target)
        elif not isinstance(node, Literal | Ident):
            node = analysis.rebuild(node, lambda c: self.visit(c, bound))
        return self._simplify(node)

    def _substitute(self, node: Node, path: tuple[str, ...]) -> Node:
        if path[0] != "event":
            return node
        value: Any = self.event
        for key in path[1:]:
            if not isinstance(value, Mapping) or key not in value:
                return node  # unknown to upstream's partial evaluation: left as written
            value = value[key]
        try:
            return literal_of(value)
        except TypeError:
            return node

    def _simplify(self, node: Node) -> Node:
        if isinstance(node, Call) and node.target is None:
            pruned = _prune(node)
            if pruned is not node:
                return pruned
        if isinstance(node, Literal) or not _is_constant(node, frozenset()):
            return node
        outcome = compile(unparse(node)).run()
        if outcome.kind != "value":
            return node  # left for the matcher, which may still give it a value
        try:
            return literal_of(outcome.value)
        except TypeError:
            return node  # timestamps and durations have no literal form


def _prune(node: Call) -> Node:
    """Drop the known side of ``&&``/``||`` and the dead branch of ``?:``.

    A known ``true`` on the left of ``&&`` (``false`` for ``||``) leaves the right side as it
    is; on the right it can only be dropped when the left is a bool, because upstream's
    ``&&``/``||`` return the deciding operand itself when it is not a bool.
    """
    fn, args = node.function, node.args
    if fn == "&&":
        left, right = args
        if _FALSE in (left, right):
            return _FALSE
        if left == _TRUE:
            return right
        if right == _TRUE and is_bool(left):
            return left
    elif fn == "||":
        left, right = args
        if left == _TRUE or (right == _TRUE and is_bool(left)):
            return _TRUE
        if left == _FALSE:
            return right
        if right == _FALSE and is_bool(left):
            return left
    elif fn == "?:" and isinstance(args[0], Literal) and args[0].kind == "bool":
        return args[1] if args[0].value else args[2]
    return node


def _is_constant(node: Node, bound: frozenset[str]) -> bool:
    """No variable (other than ones bound inside ``node``) and no clock is read."""
    if isinstance(node, Ident):
        return node.name in bound
    if isinstance(node, Call):
        if node.target is None and node.function in _CLOCK_FUNCTIONS:
            return False
        if node.function in MACROS and node.target is not None and node.args:
            var = node.args[0]
            inner = bound | {var.name} if isinstance(var, Ident) else bound
            return _is_constant(node.target, bound) and all(
                _is_constant(a, inner) for a in node.args[1:]
            )
    return all(_is_constant(c, bound) for c in analysis.children(node))
