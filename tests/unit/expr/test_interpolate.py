from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyngest.expr import ExpressionError, compile
from pyngest.expr.interpolate import interpolate, is_constant_false, match_expression
from pyngest.expr.parser import parse
from pyngest.expr.syntax import unparse

EVENT = {
    "name": "app/signup",
    "data": {"userId": "u1", "n": 5, "tags": ["a", "b"], "nested": {"k": 1}, "nul": None},
    "ts": 1700000000000,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.userId == async.data.userId", '"u1" == async.data.userId'),
        ("async.data.userId == event.data.userId && event.data.n > 3", 'async.data.userId == "u1"'),
        ("event.data.n > 10 && async.data.x == 1", "false"),
        ("event.data.n > 3 || async.data.x == 1", "true"),
        ("event.data.missing == async.data.m", "event.data.missing == async.data.m"),
        (
            "event.data.tags.exists(t, t == async.data.tag)",
            '["a", "b"].exists(t, t == async.data.tag)',
        ),
        ("event.data.nested == async.data.nested", '{"k": 1} == async.data.nested'),
        ("event.data.nul == async.data.v", "null == async.data.v"),
        (
            "lowercase(event.data.userId) + '-' + string(event.data.n) == async.data.k",
            '"u1-5" == async.data.k',
        ),
        ("event.data.n == 5 ? async.data.a : async.data.b", "async.data.a"),
        (
            "async.data.t == event.name && async.ts > event.ts",
            'async.data.t == "app/signup" && async.ts > 1700000000000',
        ),
        ("now() > date(event.data.userId)", 'now() > date("u1")'),
        ("event.data['userId'] == async.data.id", '"u1" == async.data.id'),
        ("async.data.flag && event.data.n == 5", "async.data.flag && true"),
    ],
)
def test_interpolate(source: str, expected: str) -> None:
    assert interpolate(source, EVENT) == expected


def test_interpolated_expression_matches_like_the_original() -> None:
    source = "event.data.userId == async.data.userId && async.data.total >= event.data.n"
    stored = interpolate(source, EVENT)
    incoming = {"name": "app/paid", "data": {"userId": "u1", "total": 7}}
    assert compile(stored).matches(async_=incoming)
    assert compile(source).matches(event=EVENT, async_=incoming)
    incoming["data"]["total"] = 4
    assert not compile(stored).matches(async_=incoming)


def test_strings_are_escaped() -> None:
    event = {"data": {"s": 'quote " and \\ and\nnewline'}}
    stored = interpolate("event.data.s == async.data.s", event)
    assert compile(stored).matches(async_=event)


def test_constant_false_is_detectable() -> None:
    assert is_constant_false(interpolate("event.data.n > 10 && async.data.x == 1", EVENT))
    assert is_constant_false("1 > 2")
    assert not is_constant_false("async.data.x == 1")
    assert not is_constant_false("true")
    assert not is_constant_false("now() < now()")


def test_match_shorthand() -> None:
    assert match_expression("data.userId") == "event.data.userId == async.data.userId"
    assert interpolate(match_expression("data.userId"), EVENT) == '"u1" == async.data.userId'
    with pytest.raises(ExpressionError):
        match_expression("data.user-id")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=6,
    )
)  # fmt: skip
def test_any_json_value_round_trips_through_interpolation(value: Any) -> None:
    stored = interpolate("event.data.v == async.data.v", {"data": {"v": value}})
    assert compile(stored).matches(async_={"data": {"v": value}}) == (
        compile("event.data.v == async.data.v").matches(
            event={"data": {"v": value}}, async_={"data": {"v": value}}
        )
    )


@pytest.mark.parametrize(
    "source",
    [
        'event.data.a == "x" && async.data.b > -5',
        "a ? b : c ? d : e",
        "(a ? b : c) ? d : e",
        "a - (b - c)",
        "-(-5)",
        "x in [1, 2]",
        '{"a": 1u, 2: 0x1F}.a',
        "e.all(x, x > 1.5e3)",
        "!!true",
        "(-5).foo",
        "'it\\'s' + b'\\xff\\101'",
        '"""multi\nline"""',
        "-9223372036854775808",
        "1 + 2 * 3 - 4 / (5 % 6)",
        "(a || b) && c",
    ],
)
def test_unparse_round_trips(source: str) -> None:
    once = unparse(parse(source))
    assert unparse(parse(once)) == once
    assert parse(once) == parse(source)
