"""``compile``: source text to a ``Program``, caching by text, by template and by shape.

Parsing costs tens of microseconds in Python, and a server stores a new pause expression for
nearly every waitForEvent, almost always of a shape it has seen. So, as upstream's "lifting
parser" does, we first cut the string literals out of the text: if the remaining *template*
was compiled before, the new program is that template's shape with the new strings, without
parsing. That is only done for text whose strings the cut cannot get wrong (no backslashes,
comments, triple quotes or string prefixes).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TypeVar

from pyngest.expr import analysis
from pyngest.expr.lowering import VALUE
from pyngest.expr.parser import parse
from pyngest.expr.program import Program, Shape
from pyngest.expr.syntax import ExpressionError, unparse

SHAPE_CACHE_SIZE = 10_000
PROGRAM_CACHE_SIZE = 10_000
TEMPLATE_CACHE_SIZE = 10_000

_V = TypeVar("_V")
_SHAPES: OrderedDict[str, Shape] = OrderedDict()
_PROGRAMS: OrderedDict[str, Program] = OrderedDict()
# template text -> (shape, literal values of the first program, positions of its strings)
_TEMPLATES: OrderedDict[str, tuple[Shape, tuple[object, ...], tuple[int, ...]]] = OrderedDict()

_STRING = re.compile(r'"[^"\\\r\n]*"|\'[^\'\\\r\n]*\'')


def compile(source: str, *, cache: bool = True) -> Program:
    """Compile ``source``. Raises ExpressionError with a message saying where and why.

    ``cache=False`` skips the by-text program cache (for texts seen once, like pauses); the
    template and shape caches still apply.
    """
    if cache:
        cached = _PROGRAMS.get(source)
        if cached is not None:
            _PROGRAMS.move_to_end(source)
            return cached
    try:
        program = _from_template(source) or _compile_new(source)
    except RecursionError:
        # not within the parser's limits on nesting and operators, but an error all the same
        raise ExpressionError(f"the expression is too complex: {source[:80]!r}...") from None
    if cache:
        _remember(_PROGRAMS, source, program, PROGRAM_CACHE_SIZE)
    return program


def validate(source: str) -> None:
    """Raise ExpressionError if ``source`` is not an expression Inngest accepts."""
    compile(source)


def _remember(cache: OrderedDict[str, _V], key: str, value: _V, limit: int) -> _V:
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > limit:
        cache.popitem(last=False)
    return value


def _split_strings(source: str) -> tuple[str, list[str]] | None:
    """(template, strings) with each simple string literal emptied, or None if unsure."""
    if "\\" in source or "//" in source or '"""' in source or "'''" in source:
        return None
    pieces: list[str] = []
    strings: list[str] = []
    pos = 0
    for m in _STRING.finditer(source):
        start = m.start()
        if start and (source[start - 1].isalnum() or source[start - 1] == "_"):
            return None  # r"..", b"..": a prefixed literal
        pieces.append(source[pos:start])
        pieces.append(source[start] * 2)
        strings.append(m.group()[1:-1])
        pos = m.end()
    pieces.append(source[pos:])
    return "".join(pieces), strings


def _from_template(source: str) -> Program | None:
    split = _split_strings(source)
    if split is None:
        return None
    found = _TEMPLATES.get(split[0])
    if found is None:
        return None
    shape, values, positions = found
    new = list(values)
    for position, text in zip(positions, split[1], strict=True):
        new[position] = text
    return Program(source, shape, tuple(new))


def _compile_new(source: str) -> Program:
    tree = parse(source)
    analysis.check(tree, source)
    lifted = analysis.lift(tree)
    key = unparse(lifted.shape)
    shape = _SHAPES.get(key)
    if shape is None:
        shape = Shape(key, lifted.shape, lifted.slots)
        # Build the pattern with every path present now, so a bad expression fails here.
        checked = shape.variant((VALUE,) * len(shape.paths))
        if checked.static is not None and checked.static.kind == "error":
            raise ExpressionError(f"invalid expression {source!r}: {checked.static.error}")
    _remember(_SHAPES, key, shape, SHAPE_CACHE_SIZE)
    program = Program(source, shape, lifted.values)
    _learn_template(source, program)
    return program


def _learn_template(source: str, program: Program) -> None:
    split = _split_strings(source)
    if split is None:
        return
    positions = tuple(i for i, slot in enumerate(program.shape.slots) if slot.startswith("s"))
    # Strings used as path keys (event["data"]) stay in the shape, not in a slot: then the
    # cut and the slots would not line up, and this text gets no template.
    if len(positions) != len(split[1]):
        return
    if any(program.values[p] != text for p, text in zip(positions, split[1], strict=True)):
        return
    _remember(_TEMPLATES, split[0], (program.shape, program.values, positions), TEMPLATE_CACHE_SIZE)
