"""A CEL parser: source text to the tree in ``syntax.py``.

Follows the CEL language definition (cel-spec ``langdef.md``): ``?:``, ``||``, ``&&``,
relations (``== != < <= > >= in``), ``+ -``, ``* / %``, unary ``! -``, member access, index,
calls, list and map literals; int (decimal, hex), uint (``u`` suffix), double, string (single,
double and triple quotes, raw ``r``), bytes (``b``), bool and null literals; ``//`` comments.
Message construction (``Type{...}``) and the leading-dot root scope are not supported: no
message types are declared in Inngest's environment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TypeVar

from pyngest.expr.syntax import (
    Call,
    ExpressionError,
    Ident,
    Index,
    ListExpr,
    Literal,
    MapExpr,
    Node,
    Select,
)

_RESERVED = frozenset(
    [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ]
)

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f]+|//[^\n]*)
  | (?P<number>(?:[0-9]+\.[0-9]+|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+
      |0[xX][0-9a-fA-F]+[uU]?|[0-9]+[uU]?)
  | (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|"|'))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,\[\](){}])
    """,
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "?": "?", '"': '"', "'": "'", "`": "`",
}  # fmt: skip

_T = TypeVar("_T")

Token = tuple[str, object, int]  # (kind, value, offset); kinds: number/string/bytes/ident/op/end


def parse(source: str) -> Node:
    """Parse CEL ``source``; raises ExpressionError naming the line, column and cause."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
    if not source.strip():
        raise ExpressionError("the expression is empty")
    parser = _Parser(source)
    _check_size(source, parser.tokens)
    return parser.parse()


# Brackets open at once, and operators in all: the parser and the passes over the tree recurse
# once per level, and a chain of operators is a tree as deep as it is long.
MAX_NESTING = 32
MAX_OPERATORS = 150
# Characters of an expression someone wrote (a function's config, an SDK's wait condition, a
# search), checked before it is parsed: compiling takes time in proportion (a list literal of
# 16 KiB ~100 ms), on the event loop. Not applied to what interpolating an event's values made.
MAX_LENGTH = 16_384
_OPERATORS = frozenset(("||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "?", "!"))


def check_length(source: str) -> None:
    """Refuse an expression longer than :data:`MAX_LENGTH` (see there)."""
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(source)} characters long; the limit is {MAX_LENGTH}")


def _check_size(source: str, tokens: list[Token]) -> None:
    depth = operators = 0
    for kind, value, offset in tokens:
        if kind != "op":
            continue
        if value in ("(", "[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                raise error_at(source, offset, f"the expression nests brackets more than {MAX_NESTING} deep")
        elif value in (")", "]", "}"):
            depth -= 1
        elif value in _OPERATORS:
            operators += 1
            if operators > MAX_OPERATORS:
                raise error_at(source, offset, f"the expression has more than {MAX_OPERATORS} operators")


def _position(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    col = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{col}"


def error_at(source: str, offset: int, message: str) -> ExpressionError:
    line_start = source.rfind("\n", 0, offset) + 1
    line_end = source.find("\n", offset)
    line = source[line_start : line_end if line_end >= 0 else len(source)]
    caret = " " * (offset - line_start) + "^"
    return ExpressionError(f"{message} (at {_position(source, offset)})\n | {line}\n | {caret}")


def _tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    n = len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        if m is None:
            raise error_at(source, pos, f"unexpected character {source[pos]!r}")
        kind = m.lastgroup
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "string":
            prefix = m.group().rstrip("'\"")
            quote = m.group()[len(prefix) :]
            is_bytes = "b" in prefix.lower()
            raw = "r" in prefix.lower()
            parts, end = _read_string(source, m.end(), quote, raw, pos)
            if is_bytes:
                tokens.append(("bytes", b"".join(_as_bytes(p) for p in parts), pos))
            else:
                tokens.append(
                    ("string", "".join(chr(p) if isinstance(p, int) else p for p in parts), pos)
                )
            pos = end
            continue
        text = m.group()
        if kind == "number":
            tokens.append(("number", text, pos))
        elif kind == "ident":
            if text in _RESERVED:
                raise error_at(source, pos, f"{text!r} is a reserved word and cannot be used")
            tokens.append(("ident", text, pos))
        else:
            tokens.append(("op", text, pos))
        pos = m.end()
    tokens.append(("end", None, n))
    return tokens


@functools.cache
def _plain_run(quote: str, raw: bool, triple: bool) -> re.Pattern[str]:
    """Characters of a string body up to its next quote, backslash (not raw) or newline (not
    triple-quoted): the only ones :func:`_read_string` must look at."""
    stops = re.escape(quote) + ("" if raw else r"\\") + ("" if triple else r"\n")
    return re.compile(f"[^{stops}]+")


def _read_string(
    source: str, pos: int, quote: str, raw: bool, start: int
) -> tuple[list[str | int], int]:
    """Read a string body after its opening quote; returns (parts, offset after the quote).

    Parts are text, or ints for ``\\x`` and octal escapes: in a bytes literal those are one
    raw byte each, in a string literal they are code points.
    """
    out: list[str | int] = []
    n = len(source)
    triple = len(quote) == 3
    plain = _plain_run(quote[0], raw, triple)
    while True:
        run = plain.match(source, pos)
        if run is not None:  # characters with nothing to interpret: taken at once, not one by one
            out.append(run.group())
            pos = run.end()
        if pos >= n:
            raise error_at(source, start, "this string is never closed")
        if source.startswith(quote, pos):
            return out, pos + len(quote)
        ch = source[pos]
        if ch == "\n" and not triple:
            raise error_at(source, start, "this string is never closed on its line")
        if ch != "\\" or raw:
            out.append(ch)
            pos += 1
            continue
        if pos + 1 >= n:
            raise error_at(source, pos, "a string ends with a lone backslash")
        esc = source[pos + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            pos += 2
        elif esc in "xX" or esc in "uU":
            width = {"x": 2, "X": 2, "u": 4, "U": 8}[esc]
            digits = source[pos + 2 : pos + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise error_at(source, pos, f"\\{esc} needs {width} hex digits")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise error_at(source, pos, f"\\{esc}{digits} is not a valid code point")
            out.append(code if esc in "xX" else chr(code))
            pos += 2 + width
        elif esc in "0123":
            digits = source[pos + 1 : pos + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits):
                raise error_at(source, pos, "an octal escape needs three digits, like \\101")
            out.append(int(digits, 8))
            pos += 4
        else:
            raise error_at(source, pos, f"unknown escape \\{esc} in a string")


def _as_bytes(part: str | int) -> bytes:
    return bytes([part]) if isinstance(part, int) else part.encode("utf-8")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.pos = 0

    # -- token helpers ------------------------------------------------------------------------

    def _peek(self) -> Token:
        return self.tokens[self.pos]

    def _at_op(self, *ops: str) -> bool:
        kind, value, _ = self.tokens[self.pos]
        return kind == "op" and value in ops

    def _at_ident(self, name: str) -> bool:
        kind, value, _ = self.tokens[self.pos]
        return kind == "ident" and value == name

    def _next(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def _expect(self, op: str, what: str) -> None:
        kind, value, offset = self._peek()
        if kind == "op" and value == op:
            self.pos += 1
            return
        found = "the end of the expression" if kind == "end" else repr(value)
        raise error_at(self.source, offset, f"expected {what}, found {found}")

    def _error(self, message: str) -> ExpressionError:
        return error_at(self.source, self._peek()[2], message)

    # -- grammar ------------------------------------------------------------------------------

    def parse(self) -> Node:
        node = self._expr()
        kind, value, offset = self._peek()
        if kind != "end":
            raise error_at(self.source, offset, f"unexpected {value!r} after a complete expression")
        return node

    def _expr(self) -> Node:
        cond = self._or()
        if self._at_op("?"):
            self._next()
            then = self._or()
            self._expect(":", "':' of the conditional 'a ? b : c'")
            otherwise = self._expr()
            return Call("?:", (cond, then, otherwise))
        return cond

    def _binary(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        left = operand()
        while self._at_op(*ops) or ("in" in ops and self._at_ident("in")):
            op = str(self._next()[1])
            left = Call(op, (left, operand()))
        return left

    def _or(self) -> Node:
        return self._binary(("||",), self._and)

    def _and(self) -> Node:
        return self._binary(("&&",), self._relation)

    def _relation(self) -> Node:
        return self._binary(("==", "!=", "<", "<=", ">", ">=", "in"), self._addition)

    def _addition(self) -> Node:
        return self._binary(("+", "-"), self._multiplication)

    def _multiplication(self) -> Node:
        return self._binary(("*", "/", "%"), self._unary)

    def _unary(self) -> Node:
        if self._at_op("!"):
            self._next()
            return Call("!", (self._unary(),))
        if self._at_op("-"):
            offset = self._next()[2]
            kind, value, _ = self._peek()
            if kind == "number" and not str(value).lower().endswith("u"):
                # CEL reads "-5" as one int literal, which is how -9223372036854775808 fits.
                self._next()
                return self._member_tail(self._number(str(value), offset, negative=True))
            return Call("neg", (self._unary(),))
        return self._member()

    def _member(self) -> Node:
        return self._member_tail(self._primary())

    def _member_tail(self, node: Node) -> Node:
        while True:
            if self._at_op("."):
                self._next()
                kind, value, offset = self._next()
                if kind != "ident":
                    raise error_at(self.source, offset, "expected a field name after '.'")
                name = str(value)
                if self._at_op("("):
                    node = Call(name, self._arguments(), target=node)
                else:
                    node = Select(node, name)
            elif self._at_op("["):
                self._next()
                index = self._expr()
                self._expect("]", "']'")
                node = Index(node, index)
            elif self._at_op("{"):
                raise self._error("message construction (Type{...}) is not supported")
            else:
                return node

    def _arguments(self) -> tuple[Node, ...]:
        self._expect("(", "'('")
        args: list[Node] = []
        if not self._at_op(")"):
            args.append(self._expr())
            while self._at_op(","):
                self._next()
                args.append(self._expr())
        self._expect(")", "')' closing the argument list")
        return tuple(args)

    def _primary(self) -> Node:
        kind, value, offset = self._next()
        if kind == "number":
            return self._number(str(value), offset, negative=False)
        if kind == "string":
            return Literal(value, "string")
        if kind == "bytes":
            return Literal(value, "bytes")
        if kind == "ident":
            name = str(value)
            if name in ("true", "false"):
                return Literal(name == "true", "bool")
            if name == "null":
                return Literal(None, "null")
            if self._at_op("("):
                return Call(name, self._arguments())
            return Ident(name)
        if kind == "op":
            if value == "(":
                node = self._expr()
                self._expect(")", "')'")
                return node
            if value == "[":
                return ListExpr(tuple(self._sequence("]", self._expr)))
            if value == "{":
                return MapExpr(tuple(self._sequence("}", self._map_entry)))
            if value == ".":
                raise error_at(self.source, offset, "a leading '.' (root scope) is not supported")
        if kind == "end":
            raise error_at(self.source, offset, "the expression ends too early")
        raise error_at(self.source, offset, f"unexpected {value!r}")

    def _sequence(self, close: str, item: Callable[[], _T]) -> list[_T]:
        items: list[_T] = []
        while not self._at_op(close):
            items.append(item())
            if self._at_op(","):
                self._next()
            elif not self._at_op(close):
                raise self._error(f"expected ',' or '{close}'")
        self._next()
        return items

    def _map_entry(self) -> tuple[Node, Node]:
        key = self._expr()
        self._expect(":", "':' between a map key and its value")
        return key, self._expr()

    def _number(self, text: str, offset: int, *, negative: bool) -> Literal:
        lower = text.lower()
        if lower.endswith("u"):
            digits = lower[:-1]
            value = int(digits, 16) if digits.startswith("0x") else int(digits)
            if value >= 2**64:
                raise error_at(self.source, offset, f"uint literal {text} is out of range")
            return Literal(value, "uint")
        if lower.startswith("0x"):
            value = int(lower, 16)
        elif any(c in lower for c in ".e"):
            f = float(lower)
            return Literal(-f if negative else f, "double")
        else:
            value = int(lower)
        if negative:
            value = -value
        if not -(2**63) <= value < 2**63:
            raise error_at(self.source, offset, f"int literal {text} is out of range for int64")
        return Literal(value, "int")
