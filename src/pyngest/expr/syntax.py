"""The expression tree, and turning it back into CEL text.

We parse CEL ourselves (``parser.py``) because three things need the tree and the C++ runtime
does not expose it: interpolating ``event.*`` values before a pause is stored, lifting literals
so that thousands of pauses share one compiled program, and splitting a pause's condition into
parts the index can look up.

Operators are ``Call`` nodes named by their symbol (``"=="``, ``"&&"``, ``"?:"``, ``"in"``,
``"!"`` and ``"neg"`` for unary minus); method calls carry a ``target``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias


class ExpressionError(ValueError):
    """An expression that cannot be compiled; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Literal:
    value: object
    # "int", "uint", "double", "string", "bytes", "bool" or "null": Python cannot tell
    # an int literal from a uint one, and CEL can.
    kind: str


@dataclass(frozen=True, slots=True)
class Ident:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapExpr:
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Lifted:
    """A literal moved out of the expression into the ``_lit`` map (slot name says its kind)."""

    slot: str
    kind: str


Node: TypeAlias = Literal | Ident | Select | Index | Call | ListExpr | MapExpr | Lifted

BINARY_OPERATORS = frozenset(
    {"||", "&&", "==", "!=", "<", "<=", ">", ">=", "in", "+", "-", "*", "/", "%"}
)
RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

# Internal names the rewritten programs use; user expressions may not mention them.
LIT_VAR = "_lit"
LITS_VAR = "_lits"  # a list of _lit maps, when one program runs for many expressions at once
NOW_VAR = "_now"
INTERNAL_PREFIX = "pyngest_"

_PRECEDENCE = {
    "?:": 0,
    "||": 1,
    "&&": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5,
    "!": 6, "neg": 6,
}  # fmt: skip
_PRIMARY = 7


def literal_of(value: object) -> Node:
    """The literal node for a JSON-like Python value (used when interpolating event values)."""
    if value is None:
        return Literal(None, "null")
    if isinstance(value, bool):
        return Literal(value, "bool")
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return Literal(value, "int")
        # Outside int64 CEL has no int literal; JSON decoders give a double here too.
        return Literal(float(value), "double")
    if isinstance(value, float):
        return Literal(value, "double")
    if isinstance(value, str):
        return Literal(value, "string")
    if isinstance(value, bytes | bytearray):
        return Literal(bytes(value), "bytes")
    if isinstance(value, list | tuple):
        return ListExpr(tuple(literal_of(v) for v in value))
    if isinstance(value, dict):
        return MapExpr(tuple((literal_of(k), literal_of(v)) for k, v in value.items()))
    raise TypeError(f"cannot write a {type(value).__name__} as a CEL literal")


def literal_value(node: Node) -> tuple[bool, object]:
    """(True, value) when ``node`` is a constant (literal, or list/map of constants)."""
    if isinstance(node, Literal):
        return True, node.value
    if isinstance(node, ListExpr):
        items = []
        for item in node.items:
            ok, v = literal_value(item)
            if not ok:
                return False, None
            items.append(v)
        return True, items
    if isinstance(node, MapExpr):
        out: dict[object, object] = {}
        for k, v in node.entries:
            ok_k, key = literal_value(k)
            ok_v, val = literal_value(v)
            if not (ok_k and ok_v) or isinstance(key, list | dict):
                return False, None
            out[key] = val
        return True, out
    return False, None


# ---------------------------------------------------------------------------------------------
# Unparsing


def unparse(node: Node) -> str:
    """CEL source for ``node``, with only the parentheses precedence needs."""
    return _unparse(node)


def _precedence(node: Node) -> int:
    if isinstance(node, Call) and node.target is None and node.function in _PRECEDENCE:
        if node.function == "neg" or node.function == "!":
            return _PRECEDENCE[node.function] if len(node.args) == 1 else _PRIMARY
        return _PRECEDENCE[node.function]
    if isinstance(node, Literal) and node.kind in ("int", "double") and _is_negative(node.value):
        return _PRECEDENCE["neg"]
    return _PRIMARY


def _is_negative(value: object) -> bool:
    return isinstance(value, int | float) and (value < 0 or math.copysign(1.0, value) < 0)


def _wrap(node: Node, minimum: int) -> str:
    text = _unparse(node)
    return f"({text})" if _precedence(node) < minimum else text


def _unparse(node: Node) -> str:
    if isinstance(node, Literal):
        return _literal_text(node)
    if isinstance(node, Ident):
        return node.name
    if isinstance(node, Lifted):
        return f"{LIT_VAR}.{node.slot}"
    if isinstance(node, Select):
        return f"{_wrap(node.operand, _PRIMARY)}.{node.field}"
    if isinstance(node, Index):
        return f"{_wrap(node.operand, _PRIMARY)}[{_unparse(node.index)}]"
    if isinstance(node, ListExpr):
        return "[" + ", ".join(_unparse(i) for i in node.items) + "]"
    if isinstance(node, MapExpr):
        return "{" + ", ".join(f"{_unparse(k)}: {_unparse(v)}" for k, v in node.entries) + "}"
    return _call_text(node)


def _call_text(node: Call) -> str:
    fn, args = node.function, node.args
    if node.target is None:
        if fn == "?:" and len(args) == 3:
            cond = _wrap(args[0], _PRECEDENCE["||"])
            return f"{cond} ? {_wrap(args[1], _PRECEDENCE['||'])} : {_wrap(args[2], 0)}"
        if fn in BINARY_OPERATORS and len(args) == 2:
            prec = _PRECEDENCE[fn]
            # Left-associative: an equal-precedence right operand keeps its parentheses.
            return f"{_wrap(args[0], prec)} {fn} {_wrap(args[1], prec + 1)}"
        if fn == "!" and len(args) == 1:
            return f"!{_wrap(args[0], _PRECEDENCE['!'])}"
        if fn == "neg" and len(args) == 1:
            inner = _wrap(args[0], _PRECEDENCE["neg"])
            # "--x" is two negations; a space keeps "- -5" from reading as one token.
            return f"-{inner}" if not inner.startswith("-") else f"- {inner}"
        return f"{fn}(" + ", ".join(_unparse(a) for a in args) + ")"
    target = _wrap(node.target, _PRIMARY)
    return f"{target}.{fn}(" + ", ".join(_unparse(a) for a in args) + ")"


def _literal_text(node: Literal) -> str:
    v = node.value
    if node.kind == "null":
        return "null"
    if node.kind == "bool":
        return "true" if v else "false"
    if node.kind == "int":
        return str(v)
    if node.kind == "uint":
        return f"{v}u"
    if node.kind == "double":
        assert isinstance(v, float)
        if math.isnan(v):
            return 'double("NaN")'
        if math.isinf(v):
            return 'double("Infinity")' if v > 0 else 'double("-Infinity")'
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if node.kind == "string":
        assert isinstance(v, str)
        return _quote(v)
    if node.kind == "bytes":
        assert isinstance(v, bytes)
        return "b" + _quote_bytes(v)
    raise AssertionError(node.kind)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _quote_bytes(b: bytes) -> str:
    out = ['"']
    for byte in b:
        ch = chr(byte)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    out.append('"')
    return "".join(out)
