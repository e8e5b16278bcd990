"""The static rewrite against a direct model of upstream's run-time rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pyngest.expr import compile
from pyngest.expr.parser import parse
from tests.unit.expr import upstream_model
from tests.unit.expr.strategies import events, expressions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions("async"), evs=st.lists(events("app/e"), min_size=4, max_size=8))
def test_rewrite_agrees_with_upstreams_rules(source: str, evs: list[dict[str, Any]]) -> None:
    tree = parse(source)
    program = compile(source)
    for incoming in evs:
        try:
            expected = upstream_model.matches(tree, {"async": incoming})
        except upstream_model.Tainted as why:
            event(f"skipped: {why}")  # about one case in five (hypothesis statistics)
            continue
        event("compared")
        assert program.matches(async_=incoming) == expected, (source, incoming)


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("async.data.missing < 5", {}, True),
        ("5 < async.data.missing", {}, False),
        ("(async.data.c ? async.data.missing : 1) == null", {"c": True}, True),
        ("!(lowercase(async.data.n) == 'x')", {"n": None}, True),
        ("async.data.x || async.data.y == 1", {"x": "", "y": 1}, True),
        ("async.data.n < 1", {"n": None}, True),
    ],
)
def test_the_model_is_not_trivial(source: str, data: dict[str, Any], expected: bool) -> None:
    roots = {"async": {"data": data}}
    assert upstream_model.matches(parse(source), roots) is expected
    assert compile(source).matches(async_=roots["async"]) is expected
