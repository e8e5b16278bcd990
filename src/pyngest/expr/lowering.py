"""Rewriting a parsed expression into plain CEL that behaves as upstream's lenient evaluator.

Upstream (``pkg/expressions/unknown.go``) marks every attribute path that is absent from the
data as *unknown* and decorates each call at run time: a call with an unknown argument gets a
fixed answer instead of an error (``missing == x`` is ``x == null``, ``missing < x`` is true,
``missing > x`` is false, ``size(missing)`` is 0, ``missing + x`` is ``x``, anything else is
false); an unknown select/index/list/ternary condition stays unknown; ``&&``/``||`` use
JavaScript truthiness when an operand is not a bool, and an unknown top-level result is "no
match". A null operand of ``< <= > >=`` is replaced by the zero value of the other side's type.

The C++ runtime has no such hooks. Whether a path is present is known before evaluating,
though, so we rewrite the tree once per *presence pattern* (each path missing, null, or
holding a value) and compile plain CEL for each pattern seen. The rules above become static
rewrites; what depends on run-time types (truthiness, zero values for a null) becomes
``cel.bind`` + ``type()`` tests.

Literals are lifted into the ``_lit`` map first (``_lit.s0`` is the first string), so every
pause of the shape ``async.data.id == "<something>"`` shares one compiled program.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from pyngest.expr.functions import NOW_MINUS, NOW_PLUS, USER_FUNCTIONS
from pyngest.expr.syntax import (
    INTERNAL_PREFIX,
    LIT_VAR,
    MACROS,
    NOW_VAR,
    RELATIONS,
    Call,
    ExpressionError,
    Ident,
    Index,
    Lifted,
    ListExpr,
    Literal,
    MapExpr,
    Node,
    Select,
)

ROOTS = ("event", "async", "vars")
Path = tuple[str, ...]

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
_LIFT_PREFIX = {"string": "s", "int": "i", "uint": "u", "double": "d", "bytes": "y"}
_BOOL_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_ORDERING = frozenset({"<", "<=", ">", ">="})


def attribute_path(node: Node, bound: frozenset[str]) -> Path | None:
    """The path of a chain of field selections rooted at event/async/vars, else None.

    ``event.data.id`` and ``event["data"]["id"]`` are both ("event", "data", "id"); an index
    by anything but a string literal ends the chain (upstream tracks map keys only).
    """
    keys: list[str] = []
    while True:
        if isinstance(node, Select):
            keys.append(node.field)
            node = node.operand
        elif (
            isinstance(node, Index)
            and isinstance(node.index, Literal)
            and node.index.kind == "string"
        ):
            keys.append(str(node.index.value))
            node = node.operand
        elif isinstance(node, Ident) and node.name in ROOTS and node.name not in bound:
            keys.append(node.name)
            return tuple(reversed(keys))
        else:
            return None


def check(node: Node, source: str) -> None:
    """Reject what the C++ checker would report less clearly: names and arities."""
    _check(node, frozenset(), source)


def _check(node: Node, bound: frozenset[str], source: str) -> None:
    if isinstance(node, Ident):
        if node.name not in bound and node.name not in ROOTS:
            raise ExpressionError(
                f"undeclared reference to {node.name!r} in {source!r}: "
                "expressions can read event, async and vars"
            )
        return
    if isinstance(node, Call):
        fn = node.function
        if fn.startswith(INTERNAL_PREFIX) or fn in (LIT_VAR, NOW_VAR):
            raise ExpressionError(f"undeclared function {fn!r} in {source!r}")
        if fn == "has" and node.target is None:
            if len(node.args) != 1 or not isinstance(node.args[0], Select):
                raise ExpressionError(
                    f"has() takes one field selection, like has(event.data.id), in {source!r}"
                )
            _check(node.args[0].operand, bound, source)
            return
        if fn in MACROS and node.target is not None:
            if len(node.args) not in (2, 3) or not isinstance(node.args[0], Ident):
                raise ExpressionError(
                    f"{fn}() takes a variable name and an expression, like "
                    f"list.{fn}(x, x > 1), in {source!r}"
                )
            _check(node.target, bound, source)
            inner = bound | {node.args[0].name}
            for arg in node.args[1:]:
                _check(arg, inner, source)
            return
        if node.target is None and fn in USER_FUNCTIONS and len(node.args) != USER_FUNCTIONS[fn]:
            want = USER_FUNCTIONS[fn]
            raise ExpressionError(
                f"{fn}() takes {want} argument{'s' if want != 1 else ''}, "
                f"got {len(node.args)}, in {source!r}"
            )
    for child in children(node):
        _check(child, bound, source)


def children(node: Node) -> Iterator[Node]:
    if isinstance(node, Select):
        yield node.operand
    elif isinstance(node, Index):
        yield node.operand
        yield node.index
    elif isinstance(node, Call):
        if node.target is not None:
            yield node.target
        yield from node.args
    elif isinstance(node, ListExpr):
        yield from node.items
    elif isinstance(node, MapExpr):
        for k, v in node.entries:
            yield k
            yield v


# ---------------------------------------------------------------------------------------------
# Lifting


@dataclass(frozen=True, slots=True)
class Lifting:
    shape: Node
    values: tuple[object, ...]  # in slot order
    slots: tuple[str, ...]


def lift(node: Node) -> Lifting:
    """Move string and number literals into ``_lit`` slots, left to right."""
    values: list[object] = []
    slots: list[str] = []

    def visit(n: Node, bound: frozenset[str]) -> Node:
        if attribute_path(n, bound) is not None:
            return n  # path keys are part of the shape, like field names
        if isinstance(n, Literal):
            prefix = _LIFT_PREFIX.get(n.kind)
            if prefix is None:
                return n  # bool and null stay: the rewrite rules look at them
            slot = f"{prefix}{len(values)}"
            values.append(n.value)
            slots.append(slot)
            return Lifted(slot, n.kind)
        if isinstance(n, Call) and n.function in MACROS and n.target is not None:
            var = n.args[0]
            inner = bound | {var.name} if isinstance(var, Ident) else bound
            target = visit(n.target, bound)
            return Call(n.function, (var, *(visit(a, inner) for a in n.args[1:])), target)
        return rebuild(n, lambda c: visit(c, bound))

    shape = visit(node, frozenset())
    return Lifting(shape, tuple(values), tuple(slots))


def rebuild(node: Node, f: Callable[[Node], Node]) -> Node:
    if isinstance(node, Select):
        return Select(f(node.operand), node.field)
    if isinstance(node, Index):
        return Index(f(node.operand), f(node.index))
    if isinstance(node, Call):
        target = f(node.target) if node.target is not None else None
        return Call(node.function, tuple(f(a) for a in node.args), target)
    if isinstance(node, ListExpr):
        return ListExpr(tuple(f(i) for i in node.items))
    if isinstance(node, MapExpr):
        return MapExpr(tuple((f(k), f(v)) for k, v in node.entries))
    return node


def uses_now(node: Node) -> bool:
    if (
        isinstance(node, Call)
        and node.target is None
        and node.function in ("now", "now_plus", "now_minus")
    ):
        return True
    return any(uses_now(c) for c in children(node))


# ---------------------------------------------------------------------------------------------
# Lowering one presence pattern


@dataclass(frozen=True, slots=True)
class Unknown:
    """Upstream's "unknown". ``witness`` is the missing path: evaluating it natively raises
    an error, which is what we emit where an unknown cannot be decided statically."""

    witness: Node


Lowered: TypeAlias = Node | Unknown


def lower(shape: Node, status: dict[Path, int]) -> Lowered:
    return _Lowerer(status).lower(shape, frozenset())


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


def _is_null(node: Node) -> bool:
    return node in (_NULL, _NULL_VALUE)


def _static_kind(node: Node) -> str | None:
    """The CEL type of a literal operand, when it is one."""
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

    def _truthy(self, var: Ident) -> Node:
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

    def _with_ident(self, value: Node, body: Callable[[Ident], Node]) -> Node:
        """``body`` applied to a name for ``value`` (``cel.bind``), so it is evaluated once.
        The value is bound as dyn: the type tests in ``body`` must not be checked statically."""
        var = Ident(f"{INTERNAL_PREFIX}v{next(self.names)}")
        return Call("bind", (var, Call("dyn", (value,)), body(var)), target=Ident("cel"))

    def _with_truthy(self, value: Node, body: Callable[[Node, Node], Node]) -> Node:
        return self._with_ident(value, lambda v: body(self._truthy(v), v))

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
        parts: list[Node] = []
        for child in children(node):
            part = self.lower(child, bound)
            if isinstance(part, Unknown):
                return part
            parts.append(part)
        it = iter(parts)
        return rebuild(node, lambda _c: next(it))

    def _materialize(self, value: Lowered) -> Node:
        return value.witness if isinstance(value, Unknown) else value

    def _call(self, node: Call, bound: frozenset[str]) -> Lowered:
        fn, args = node.function, node.args
        if node.target is None:
            if fn == "has" and len(args) == 1 and isinstance(args[0], Select):
                return self._has(args[0], bound)
            if fn == "&&" or fn == "||":
                return self._logical(fn, self.lower(args[0], bound), self.lower(args[1], bound))
            if fn == "?:":
                return self._conditional(node, bound)
            if fn == "now" and not args:
                return Ident(NOW_VAR)
        if fn in MACROS and node.target is not None and args and isinstance(args[0], Ident):
            range_ = self.lower(node.target, bound)
            if isinstance(range_, Unknown):
                return range_
            inner = bound | {args[0].name}
            body = tuple(self._materialize(self.lower(a, inner)) for a in args[1:])
            return Call(fn, (args[0], *body), range_)

        target = self.lower(node.target, bound) if node.target is not None else None
        lowered = [self.lower(a, bound) for a in args]
        operands = ([target] if target is not None else []) + lowered
        if any(isinstance(o, Unknown) for o in operands):
            return self._unknown_call(fn, node.target is not None, operands)
        plain = [o for o in lowered if not isinstance(o, Unknown)]
        assert target is None or not isinstance(target, Unknown)
        if node.target is None:
            if fn in ("now_plus", "now_minus"):
                return Call(NOW_PLUS if fn == "now_plus" else NOW_MINUS, (Ident(NOW_VAR), plain[0]))
            if fn in _ORDERING and any(_is_null(o) for o in plain):
                return self._null_ordering(fn, plain[0], plain[1])
            if fn == "!" and isinstance(plain[0], Literal) and plain[0].kind == "bool":
                return Literal(not plain[0].value, "bool")
        call = Call(fn, tuple(plain), target)
        if any(o == _NULL_VALUE for o in operands):
            return self._null_operand(call, [o for o in operands if not isinstance(o, Unknown)])
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
        operand = self.lower(select.operand, bound)
        if isinstance(operand, Unknown):
            return operand
        return Call("has", (Select(operand, select.field),))

    def _unknown_call(self, fn: str, method: bool, operands: list[Lowered]) -> Lowered:
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

    def _logical(self, fn: str, a: Lowered, b: Lowered) -> Lowered:
        """``a || b`` / ``a && b``. Upstream: native CEL when both operands are bools, else
        ``||`` gives the first truthy operand (or the last) and ``&&`` the first falsy one
        (or the last). Unknown is falsy. ``decides`` is the bool that settles the result."""
        is_or = fn == "||"
        decides, passes = (_TRUE, _FALSE) if is_or else (_FALSE, _TRUE)

        def choose(t: Node, v: Node, other: Node) -> Node:
            return Call("?:", (t, v, other) if is_or else (t, other, v))

        if isinstance(a, Unknown):
            return b if is_or else a
        if a == decides:
            return decides
        if a == passes:
            return b
        if isinstance(b, Unknown):
            witness = b.witness  # evaluating it fails, as the unknown result does upstream
            return self._with_truthy(a, lambda t, v: choose(t, v, witness))
        if is_bool(a):
            if b == decides:
                return decides
            if b == passes:
                return a
            if is_bool(b):
                return Call(fn, (a, b))
            return choose(a, _TRUE if is_or else _FALSE, b)
        return self._with_truthy(a, lambda t, v: choose(t, v, b))

    def _conditional(self, node: Call, bound: frozenset[str]) -> Lowered:
        cond = self.lower(node.args[0], bound)
        then = self.lower(node.args[1], bound)
        otherwise = self.lower(node.args[2], bound)
        if isinstance(cond, Unknown):
            return cond
        if isinstance(cond, Literal) and cond.kind == "bool":
            return then if cond.value else otherwise
        return Call("?:", (cond, self._materialize(then), self._materialize(otherwise)))


def paths_of(node: Node) -> tuple[Path, ...]:
    """Every attribute path in ``node`` in order of first appearance (names bound by macros
    and by the rewrite's ``cel.bind`` are not roots)."""
    found: dict[Path, None] = {}

    def visit(n: Node, bound: frozenset[str]) -> None:
        path = attribute_path(n, bound)
        if path is not None:
            found.setdefault(path, None)
            return
        if (
            isinstance(n, Call)
            and n.target is not None
            and n.args
            and isinstance(n.args[0], Ident)
            and (n.function in MACROS or (n.function == "bind" and n.target == Ident("cel")))
        ):
            inner = bound | {n.args[0].name}
            if n.function == "bind":
                visit(n.args[1], bound)
                visit(n.args[2], inner)
            else:
                visit(n.target, bound)
                for a in n.args[1:]:
                    visit(a, inner)
            return
        for c in children(n):
            visit(c, bound)

    visit(node, frozenset())
    return tuple(found)


def mentions(node: Node, name: str) -> bool:
    """Whether the internal variable ``name`` (``_lit`` or ``_now``) is read."""
    if isinstance(node, Ident):
        return node.name == name
    if isinstance(node, Lifted):
        return name == LIT_VAR
    return any(mentions(c, name) for c in children(node))
