"""Questions asked of a parsed expression: which fields it reads, whether its names are
declared, and its *shape* (the expression with its literals lifted into ``_lit`` slots, so
every pause of the shape ``async.data.id == "<something>"`` shares one compiled program)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyngest.expr.functions import USER_FUNCTIONS
from pyngest.expr.syntax import (
    INTERNAL_PREFIX,
    LIT_VAR,
    MACROS,
    NOW_VAR,
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

_LIFT_PREFIX = {"string": "s", "int": "i", "uint": "u", "double": "d", "bytes": "y"}


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
