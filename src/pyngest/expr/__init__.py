"""Placeholder expression layer (being replaced by the full implementation on the expr branch).

Compiles CEL with cel-expr-python; errors and missing fields evaluate to "no match".
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

_ENV = cel.NewEnv(
    variables={
        "event": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
        "async": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
        "vars": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
    }
)


class ExpressionError(ValueError):
    pass


class Program:
    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._expr = _ENV.compile(source)
        except Exception as exc:
            raise ExpressionError(f"invalid expression {source!r}: {exc}") from exc

    def evaluate(self, *, event: Any = None, async_: Any = None, vars: Any = None) -> Any:
        data = {"event": event or {}, "async": async_ or {}, "vars": vars or {}}
        try:
            value = self._expr.eval(data=data)
        except Exception:
            return None
        if value.type() == cel.Type.ERROR:
            return None
        return value.value()

    def matches(self, *, event: Any = None, async_: Any = None, vars: Any = None) -> bool:
        return self.evaluate(event=event, async_=async_, vars=vars) is True


@lru_cache(maxsize=10_000)
def compile(source: str) -> Program:  # noqa: A001
    return Program(source)


def validate(source: str) -> None:
    compile(source)


_EVENT_REF = re.compile(r"\bevent((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def interpolate(source: str, event: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        value: Any = event
        for part in m.group(1).split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return "null"
            value = value[part]
        return json.dumps(value)

    return _EVENT_REF.sub(sub, source)


def match_expression(field: str) -> str:
    field = field.removeprefix("event.")
    return f"event.{field} == async.{field}"
