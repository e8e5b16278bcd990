"""A direct, slow model of upstream's evaluator (pkg/expressions/unknown.go), for testing.

It interprets the parsed tree at run time, as upstream's decorator does: missing paths are
UNKNOWN, calls with an unknown (or failed) argument get handleUnknownCall's fixed answers,
``&&``/``||`` switch to JavaScript truthiness when an operand is not a bool, a null in an
ordering is compared as the other side's zero value. It covers the subset the property tests
generate. Where upstream and pyngest are documented to differ (an error that does not come
from a null field), it raises ``Tainted`` and the caller skips the case.
"""

from __future__ import annotations

from typing import Any

from pyngest.expr.analysis import attribute_path
from pyngest.expr.predicates import ABSENT, walk
from pyngest.expr.syntax import Call, Ident, Lifted, ListExpr, Literal, Node

UNKNOWN: Any = object()
FAILED: Any = object()  # a native call that failed on a null argument


class Tainted(Exception):
    """The case touches a documented difference; not compared."""


def is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def cel_equal(a: object, b: object) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(cel_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(cel_equal(a[k], b[k]) for k in a)
    return a == b


def truthy(v: object) -> bool:
    if v is UNKNOWN or v is FAILED or v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v != ""
    if is_number(v):
        return v != 0
    return True


def evaluate(node: Node, roots: dict[str, Any]) -> object:
    path = attribute_path(node, frozenset())
    if path is not None:
        root = roots.get(path[0])
        value = ABSENT if root is None else walk(root, path)
        return UNKNOWN if value is ABSENT else value
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Lifted | Ident):
        raise AssertionError(node)
    if isinstance(node, ListExpr):
        items = [evaluate(i, roots) for i in node.items]
        return UNKNOWN if any(i is UNKNOWN or i is FAILED for i in items) else items
    assert isinstance(node, Call), node
    fn, args = node.function, node.args
    if fn == "has":
        select = args[0]
        p = attribute_path(select, frozenset())
        assert p is not None
        root = roots.get(p[0])
        return root is not None and walk(root, p) is not ABSENT
    values = [evaluate(a, roots) for a in args]  # upstream evaluates exhaustively
    if fn in ("&&", "||"):
        a, b = values
        if isinstance(a, bool) and isinstance(b, bool):
            return (a and b) if fn == "&&" else (a or b)
        if fn == "||":
            return a if truthy(a) else b
        return a if not truthy(a) else b
    if fn == "?:":
        cond = values[0]
        if cond is UNKNOWN or cond is FAILED:
            return UNKNOWN
        if not isinstance(cond, bool):
            raise Tainted("non-bool condition")
        return values[1] if cond else values[2]
    if any(v is UNKNOWN or v is FAILED for v in values):
        return _unknown_call(fn, values)
    return _native(fn, values)


def _unknown_call(fn: str, values: list[object]) -> object:
    missing = [v is UNKNOWN or v is FAILED for v in values]
    known = [v for v, m in zip(values, missing, strict=True) if not m]
    if fn == "==":
        return bool(known) and known[0] is None
    if fn == "!=":
        return not (bool(known) and known[0] is None)
    if fn in ("<", "<="):
        return missing[0]
    if fn in (">", ">="):
        return not missing[0]
    if fn == "+":
        raise Tainted("+ with an unknown")
    if fn == "size":
        return 0
    return False


def _native(fn: str, values: list[object]) -> object:
    if fn in ("==", "!="):
        eq = cel_equal(values[0], values[1])
        return eq if fn == "==" else not eq
    if fn in ("<", "<=", ">", ">="):
        a, b = values
        if a is None and b is not None:
            a = _zero(b)
        elif b is None and a is not None:
            b = _zero(a)
        if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise Tainted("ordering of unrelated types")
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[fn]  # type: ignore[operator]
    if fn == "in":
        if not isinstance(values[1], list):
            return _fails(values, "in over a non-list")
        return any(cel_equal(values[0], item) for item in values[1])
    if fn == "size":
        if isinstance(values[0], str | list | dict):
            return len(values[0])
        return _fails(values, "size of a scalar")
    if fn == "lowercase":
        return values[0].lower() if isinstance(values[0], str) else _fails(values, "lowercase")
    if fn == "!":
        return (not values[0]) if isinstance(values[0], bool) else _fails(values, "! of non-bool")
    raise AssertionError(fn)


def _zero(other: object) -> object:
    if isinstance(other, bool):
        raise Tainted("null against a bool")
    if is_number(other):
        return 0
    if isinstance(other, str):
        return ""
    raise Tainted("null against a list or map")


def _fails(values: list[object], why: str) -> object:
    # Upstream hands a failed call to its parent as an error, which the parent treats like
    # an unknown. pyngest does the same when a null field caused it; other errors differ.
    if any(v is None for v in values):
        return FAILED
    raise Tainted(why)


def matches(node: Node, roots: dict[str, Any]) -> bool:
    result = evaluate(node, roots)
    return result is True
