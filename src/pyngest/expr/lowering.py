"""Rewriting an expression into plain CEL that behaves as upstream's lenient evaluator.

Upstream (``pkg/expressions/unknown.go``) marks every field path absent from the data as
*unknown* and decorates each call at run time: a call with an unknown argument gets a fixed
answer instead of an error (``missing == x`` is ``x == null``, ``missing < x`` is true,
``missing > x`` is false, ``size(missing)`` is 0, ``missing + x`` is ``x``, anything else is
false); a select, index, list or conditional over an unknown stays unknown; ``&&``/``||`` use
JavaScript truthiness when an operand is not a bool; an unknown final result is "no match".
A null operand of ``< <= > >=`` is replaced by the zero value of the other side's type.

The C++ runtime has no such hooks, but whether each path is present is known before
evaluating. So we rewrite the tree once per *presence pattern* (each path missing, null, or
holding a value) and compile plain CEL for each pattern seen: the rules become static
rewrites, and what depends on run-time types (truthiness, zero values) becomes ``cel.bind`` +
``type()`` tests. Where an unknown sits in a branch that only the data picks (``c ? missing :
1``, ``a || missing``), the rewrite carries a ``Split`` up through the enclosing operations,
so each branch gets upstream's answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from pyngest.expr.analysis import Path, attribute_path, children, rebuild
from pyngest.expr.functions import NOW_MINUS, NOW_PLUS
from pyngest.expr.syntax import (
    INTERNAL_PREFIX,
    MACROS,
    NOW_VAR,
    RELATIONS,
    Call,
    Ident,
    Lifted,
    ListExpr,
    Literal,
    MapExpr,
    Node,
    Select,
)

MISSING, NULL, VALUE = 0, 1, 2

_TRUE = Literal(True, "bool")
_FALSE = Literal(False, "bool")
_NULL = Literal(None, "null")
# A path that holds null: typed dyn so the checker accepts it anywhere (size(), lowercase()),
# failing at run time as upstream's native call does.
_NULL_VALUE = Call("dyn", (_NULL,))
_ZERO = {
    "int": Literal(0, "int"),
    "uint": Literal(0, "uint"),
    "double": Literal(0.0, "double"),
    "string": Literal("", "string"),
}
_BOOL_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_ORDERING = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Unknown:
    """Upstream's "unknown". ``witness`` is the missing path: evaluating it natively fails,
    which is what we emit where an unknown must become a CEL expression."""

    witness: Node


@dataclass(frozen=True, slots=True)
class Split:
    """``cond ? then : otherwise`` where a branch is (or contains) an Unknown."""

    cond: Node
    then: Lowered
    otherwise: Lowered


Lowered: TypeAlias = Node | Unknown | Split


def lower(shape: Node, status: dict[Path, int]) -> Lowered:
    """The rewrite of ``shape`` for one presence pattern (path -> MISSING/NULL/VALUE)."""
    return _Lowerer(status).lower(shape, frozenset())


def materialize(value: Lowered) -> Node:
    """A CEL expression for ``value``; an unknown becomes its (failing) witness."""
    if isinstance(value, Unknown):
        return value.witness
    if isinstance(value, Split):
        return Call("?:", (value.cond, materialize(value.then), materialize(value.otherwise)))
    return value


def is_bool(node: Node) -> bool:
    """Whether ``node`` yields a bool (or an error) whatever the data."""
    if isinstance(node, Literal):
        return node.kind == "bool"
    if not isinstance(node, Call):
        return False
    fn = node.function
    if node.target is None:
        if fn in RELATIONS or fn in ("!", "has"):
            return True
        if fn in ("&&", "||"):
            return all(is_bool(a) for a in node.args)
        if fn == "?:":
            return is_bool(node.args[1]) and is_bool(node.args[2])
        return False
    if fn == "bind" and node.target == Ident("cel"):
        return is_bool(node.args[2])
    return fn in _BOOL_METHODS or fn in ("all", "exists", "exists_one")


def _is_null(node: Lowered) -> bool:
    return node in (_NULL, _NULL_VALUE)


def _static_kind(node: Node) -> str | None:
    """The CEL type of an operand when it is a literal."""
    if _is_null(node):
        return "null"
    if isinstance(node, Literal | Lifted):
        return node.kind
    if isinstance(node, ListExpr):
        return "list"
    if isinstance(node, MapExpr):
        return "map"
    return None


def _type_is(var: Ident, type_name: str) -> Node:
    return Call("==", (Call("type", (var,)), Ident(type_name)))


class _Lowerer:
    def __init__(self, status: dict[Path, int]) -> None:
        self.status = status
        self.names = itertools.count()

    # -- helpers that build CEL ---------------------------------------------------------------

    def _name(self) -> Ident:
        return Ident(f"{INTERNAL_PREFIX}v{next(self.names)}")

    def _with_ident(self, value: Node, body: Callable[[Ident], Node]) -> Node:
        """``body`` applied to a name for ``value`` (``cel.bind``), so it is evaluated once.
        The value is bound as dyn: the type tests in ``body`` must not be checked statically."""
        var = self._name()
        return Call("bind", (var, Call("dyn", (value,)), body(var)), target=Ident("cel"))

    @staticmethod
    def _truthy_test(var: Ident) -> Node:
        # JavaScript truthiness as upstream's isTruthy: null, false, "", 0 are falsy;
        # lists, maps and everything else are truthy.
        return Call("?:", (_type_is(var, "bool"), var, Call("?:", (
            _type_is(var, "string"), Call("!=", (var, Literal("", "string"))), Call("?:", (
                _type_is(var, "int"), Call("!=", (var, Literal(0, "int"))), Call("?:", (
                    _type_is(var, "uint"), Call("!=", (var, Literal(0, "uint"))), Call("?:", (
                        _type_is(var, "double"), Call("!=", (var, Literal(0.0, "double"))),
                        Call("!=", (Call("type", (var,)), Ident("null_type"))),
                    )),
                )),
            )),
        ))))  # fmt: skip

    def _truthy(self, value: Node) -> Node:
        """A bool expression: is ``value`` truthy."""
        if is_bool(value):
            return value
        return self._with_ident(value, self._truthy_test)

    @staticmethod
    def _branch(cond: Node, then: Lowered, otherwise: Lowered) -> Lowered:
        if isinstance(then, Unknown | Split) or isinstance(otherwise, Unknown | Split):
            return Split(cond, then, otherwise)
        return Call("?:", (cond, then, otherwise))

    def _over(
        self, parts: list[Lowered], combine: Callable[[list[Node | Unknown]], Lowered]
    ) -> Lowered:
        """``combine(parts)``, first distributing any Split among the parts over its
        branches: ``f(c ? x : unknown)`` becomes ``c ? f(x) : f(unknown)``."""
        for i, part in enumerate(parts):
            if isinstance(part, Split):
                then = self._over([*parts[:i], part.then, *parts[i + 1 :]], combine)
                otherwise = self._over([*parts[:i], part.otherwise, *parts[i + 1 :]], combine)
                return self._branch(part.cond, then, otherwise)
        return combine([p for p in parts if not isinstance(p, Split)])

    # -- the walk -----------------------------------------------------------------------------

    def lower(self, node: Node, bound: frozenset[str]) -> Lowered:
        path = attribute_path(node, bound)
        if path is not None:
            state = self.status[path]
            if state == MISSING:
                return Unknown(node)
            return _NULL_VALUE if state == NULL else node
        if isinstance(node, Literal | Lifted | Ident):
            return node
        if isinstance(node, Call):
            return self._call(node, bound)

        def combine(parts: list[Node | Unknown]) -> Lowered:
            for part in parts:
                if isinstance(part, Unknown):
                    return part
            it = iter(parts)
            return rebuild(node, lambda _c: next(it))  # type: ignore[arg-type,return-value]

        return self._over([self.lower(c, bound) for c in children(node)], combine)

    def _call(self, node: Call, bound: frozenset[str]) -> Lowered:
        fn, args = node.function, node.args
        if node.target is None:
            if fn == "has" and len(args) == 1 and isinstance(args[0], Select):
                return self._has(args[0], bound)
            if fn in ("&&", "||"):
                parts = [self.lower(a, bound) for a in args]
                return self._over(parts, lambda ps: self._logical(fn, ps[0], ps[1]))
            if fn == "?:":
                parts = [self.lower(a, bound) for a in args]
                return self._over(parts[:1], lambda c: self._conditional(c[0], parts[1], parts[2]))
            if fn == "now" and not args:
                return Ident(NOW_VAR)
        if fn in MACROS and node.target is not None and args and isinstance(args[0], Ident):
            inner = bound | {args[0].name}
            # A split inside the body may depend on the iteration variable: keep it there.
            body = tuple(materialize(self.lower(a, inner)) for a in args[1:])

            def comprehension(target: list[Node | Unknown]) -> Lowered:
                range_ = target[0]
                return range_ if isinstance(range_, Unknown) else Call(fn, (args[0], *body), range_)

            return self._over([self.lower(node.target, bound)], comprehension)

        method = node.target is not None
        operands = ([self.lower(node.target, bound)] if node.target is not None else []) + [
            self.lower(a, bound) for a in args
        ]
        return self._over(operands, lambda ps: self._apply(fn, method, ps))

    def _apply(self, fn: str, method: bool, operands: list[Node | Unknown]) -> Lowered:
        if any(isinstance(o, Unknown) for o in operands):
            return self._unknown_call(fn, method, operands)
        plain = [o for o in operands if not isinstance(o, Unknown)]
        if not method:
            if fn in ("now_plus", "now_minus"):
                return Call(NOW_PLUS if fn == "now_plus" else NOW_MINUS, (Ident(NOW_VAR), plain[0]))
            if fn in _ORDERING and any(_is_null(o) for o in plain):
                return self._null_ordering(fn, plain[0], plain[1])
            if fn == "!" and isinstance(plain[0], Literal) and plain[0].kind == "bool":
                return Literal(not plain[0].value, "bool")
        call = Call(fn, tuple(plain[1:]), plain[0]) if method else Call(fn, tuple(plain))
        if any(o == _NULL_VALUE for o in plain):
            return self._null_operand(call, plain)
        return call

    def _null_operand(self, call: Call, operands: list[Node]) -> Lowered:
        """A call given a path that holds null. Upstream runs it natively; where that fails
        the error is handled as an unknown by the enclosing call, so we return Unknown (whose
        witness, the call itself, fails the same way if it must be evaluated)."""
        fn = call.function
        if call.target is None:
            if fn in ("==", "!=", "type", "dyn"):
                return call
            if fn == "in" and operands[1] != _NULL_VALUE:
                return call
            if fn == "+" and len(operands) == 2 and not all(o == _NULL_VALUE for o in operands):
                # Go prints a CEL null as NULL_VALUE when upstream concatenates.
                text = Literal("NULL_VALUE", "string")
                left, right = operands
                return Call("+", (text, right) if left == _NULL_VALUE else (left, text))
        return Unknown(call)

    def _has(self, select: Select, bound: frozenset[str]) -> Lowered:
        path = attribute_path(select, bound)
        if path is not None:
            # We answer presence exactly (see docs/compatibility.md).
            return _TRUE if self.status[path] != MISSING else _FALSE

        def test(operand: list[Node | Unknown]) -> Lowered:
            value = operand[0]
            return (
                value if isinstance(value, Unknown) else Call("has", (Select(value, select.field),))
            )

        return self._over([self.lower(select.operand, bound)], test)

    def _unknown_call(self, fn: str, method: bool, operands: list[Node | Unknown]) -> Lowered:
        first_unknown = isinstance(operands[0], Unknown)
        known = [o for o in operands if not isinstance(o, Unknown)]
        if not method and fn in ("==", "!=") and len(operands) == 2:
            if not known:
                return _FALSE if fn == "==" else _TRUE
            other = known[0]
            kind = _static_kind(other)
            if kind is None:
                return Call(fn, (other, _NULL))
            is_null = kind == "null"
            return Literal(is_null if fn == "==" else not is_null, "bool")
        if not method and fn in ("<", "<="):
            return Literal(first_unknown, "bool")
        if not method and fn in (">", ">="):
            return Literal(not first_unknown, "bool")
        if not method and fn == "+":
            return known[0] if known else _FALSE
        if fn == "size":
            return Literal(0, "int")
        return _FALSE

    def _null_ordering(self, fn: str, left: Node, right: Node) -> Node:
        if _is_null(left) and _is_null(right):
            return Call(fn, (left, right))
        null_left = _is_null(left)
        other = right if null_left else left

        def compare(zero: Node, value: Node) -> Node:
            return Call(fn, (zero, value) if null_left else (value, zero))

        kind = _static_kind(other)
        if kind in _ZERO:
            return compare(_ZERO[kind], other)
        if kind is not None:
            return Call(fn, (left, right))  # no zero value: an error, as upstream

        def by_type(v: Ident) -> Node:
            result = compare(_NULL, v)
            for type_name in ("string", "double", "uint", "int"):
                result = Call("?:", (_type_is(v, type_name), compare(_ZERO[type_name], v), result))
            return result

        return self._with_ident(other, by_type)

    def _logical(self, fn: str, a: Node | Unknown, b: Node | Unknown) -> Lowered:
        """``a || b`` / ``a && b``. Upstream: native CEL when both operands are bools, else
        ``||`` gives the first truthy operand (or the last) and ``&&`` the first falsy one
        (or the last). Unknown is falsy. ``decides`` is the bool that settles the result."""
        is_or = fn == "||"
        decides, passes = (_TRUE, _FALSE) if is_or else (_FALSE, _TRUE)
        if isinstance(a, Unknown):
            return b if is_or else a
        if a == decides:
            return decides
        if a == passes:
            return b
        if isinstance(b, Unknown):
            # a itself when it decides, else the unknown: only the data says which
            if is_or:
                return Split(self._truthy(a), a, b)
            return Split(self._truthy(a), b, a)
        if is_bool(a):
            if b == decides:
                return decides
            if b == passes:
                return a
            if is_bool(b):
                return Call(fn, (a, b))
            return Call("?:", (a, decides, b) if is_or else (a, b, decides))
        return self._with_ident(
            a,
            lambda v: Call(
                "?:", (self._truthy_test(v), v, b) if is_or else (self._truthy_test(v), b, v)
            ),
        )

    def _conditional(self, cond: Node | Unknown, then: Lowered, otherwise: Lowered) -> Lowered:
        if isinstance(cond, Unknown):
            return cond
        if isinstance(cond, Literal) and cond.kind == "bool":
            return then if cond.value else otherwise
        return self._branch(cond, then, otherwise)
