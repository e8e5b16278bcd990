"""Evaluation rules: upstream's leniency (pkg/expressions tests) and the custom functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pyngest.clock import TestClock
from pyngest.expr import ExpressionError, compile, validate
from pyngest.expr.functions import go_format, parse_date_int, parse_date_string


def data(**fields: Any) -> dict[str, Any]:
    return {"data": fields}


# (expression, inputs, expected value). Most rows are upstream's expressions_test.go cases.
UPSTREAM_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("event.data.name", {"event": data(name="Tester")}, "Tester"),
    ("5 + 4", {}, 9),
    (
        "event.data.name + '-' + event.data.number + '-' + event.data.bool + '-' + event.data.missing",
        {"event": data(name="hi", number=9.1, bool=True)},
        "hi-9.1-true-",
    ),
    ("event.data.name + '-' + event.data.foo", {"event": data(name="T")}, "T-"),
    ('b64decode("aGkgdGhlcmUh") == "hi there!"', {}, True),
    (
        'json_parse(b64decode(event.data.encoded)).nested.data == "yea"',
        {"event": data(encoded="eyJuZXN0ZWQiOnsiZGF0YSI6InllYSJ9fQ==")},
        True,
    ),
    ("event.data == event.data", {"event": data(nope=None, inner={"eval": "ok"})}, True),
    ("event.data.a == event.data.b", {"event": data(a={"num": 9}, b={"num": 1.161})}, False),
    ("null > 0", {}, False),
    ("size(event.data.nope) > 0", {"event": data(nope=None)}, False),
    ("event.data.action > 0", {"event": data(action=None)}, False),
    (
        "event.data.float <= null && event.data.int < null",
        {"event": data(float=3.141, int=8)},
        False,
    ),
    ("event.data.float > null && event.data.int > null", {"event": data(float=3.141, int=8)}, True),
    ("event.data.int > event.data.unknown", {"event": data(int=2)}, True),
    ("event.data.int > 3.141 && event.data.float <= 2", {"event": data(int=8, float=1.111)}, True),
    ("event.data.something == null", {"event": data(something="hi")}, False),
    ("event.data.something == null", {"event": data(something=None)}, True),
    ("event.data.another == null", {"event": data()}, True),
    ("event.data.NOPE == null", {"event": {}}, True),
    ("event.data.foo != '' && 'item' in event.data.issue.fields.tags", {"event": data()}, False),
    ("event['data'].foo != '' && event['data'].bar != true", {"event": data(foo="hi")}, True),
    ("event.data.issue.field.another == 'another'", {"event": data(issue=None)}, False),
    (
        "event.data.test == true && event.data.issue.field.another != 'another'",
        {"event": data(test=True, issue=None)},
        True,
    ),
    ("event.data.title.matches('^[a-z\\\\d]{0,10}$')", {"event": data(title="nope")}, True),
    ("event.data.some.unknown.contains(event.data.title)", {"event": data(title="nope")}, False),
    ("size(event.data.action) == 6", {"event": data(action="opened")}, True),
    ("uppercase(event.priority) == 'P1'", {"event": {"priority": "p1"}}, True),
    ("lowercase(event.priority) == 'urgent'", {"event": {"priority": "URGENT"}}, True),
    ("size(event.data.tags) == 0", {"event": data()}, True),
    ("event.data.tags.exists(x, x == 'd') == false", {"event": data(tags=["a", "b"])}, True),
    ("event.data.issue in ['Bug', 'Issue', 'Epic'] == true", {"event": data(issue="Bug")}, True),
    ("event.data.nonexistent in ['LOL', 'Issue', 'Epic'] == false", {"event": data()}, True),
    ("[1, 2, 3].all(x, x > 0) && event.data.status == '200'", {"event": data(status="200")}, True),
    ("event.data.status == 200", {"event": data(status="200")}, False),
    (
        "date(event.from) + duration('6h35m10s') == date('2020-01-01T18:35:10')",
        {"event": {"from": "2020-01-01T12:00:00"}},
        True,
    ),
]


@pytest.mark.parametrize(("source", "inputs", "expected"), UPSTREAM_CASES)
def test_upstream_cases(source: str, inputs: dict[str, Any], expected: Any) -> None:
    value = compile(source).evaluate(**inputs)
    assert value == expected and type(value) is type(expected)


LENIENCY: list[tuple[str, dict[str, Any], Any]] = [
    # mixed numbers compare and are equal across int and double, literals included
    ("1 == 1.0", {}, True),
    ("async.data.n == 2", {"async_": data(n=2.0)}, True),
    ("async.data.n < 2.5", {"async_": data(n=2)}, True),
    # a missing field: == is "is it null", < is true, > false, != true, size 0, + skips it
    ("async.data.missing == 'a'", {"async_": data()}, False),
    ("async.data.missing != 'a'", {"async_": data()}, True),
    ("async.data.missing != null", {"async_": data()}, False),
    ("async.data.missing < 5", {"async_": data()}, True),
    ("5 > async.data.missing", {"async_": data()}, True),
    ("async.data.missing > 5", {"async_": data()}, False),
    ("async.data.missing == async.data.other", {"async_": data()}, False),
    ("async.data.missing == async.data.nul", {"async_": data(nul=None)}, True),
    ("size(async.data.missing) == 0", {"async_": data()}, True),
    ("!async.data.missing", {"async_": data()}, False),
    ("lowercase(async.data.missing) == 'x'", {"async_": data()}, False),
    # a null compares as the other side's zero value
    ("async.data.n < 5", {"async_": data(n=None)}, True),
    ("async.data.n < -1", {"async_": data(n=None)}, False),
    ("async.data.s < 'b'", {"async_": data(s=None)}, True),
    ("async.data.n + 'x'", {"async_": data(n=None)}, "NULL_VALUEx"),
    ("!(lowercase(async.data.n) == 'x')", {"async_": data(n=None)}, True),
    # && and || with values that are not bools: JavaScript truthiness, returning the operand
    ("async.data.x || async.data.y", {"async_": data(x="", y="b")}, "b"),
    ("async.data.x && async.data.y", {"async_": data(x="a", y=0)}, 0),
    ("async.data.missing || 'z'", {"async_": data()}, "z"),
    ("async.data.x || async.data.missing", {"async_": data(x="a")}, "a"),
    ("async.data.l && true", {"async_": data(l=[])}, True),
    # "+" across types concatenates as Go prints values
    ("'a' + 1", {}, "a1"),
    ("'n=' + async.data.n", {"async_": data(n=1e6)}, "n=1e+06"),
    ("async.data.b + '!'", {"async_": data(b=False)}, "false!"),
    # single quotes, has(), the conditional
    ("'single' == \"single\"", {}, True),
    ("!has(async.data.missing)", {"async_": data()}, True),
    ("has(async.data.x) ? async.data.x : 'default'", {"async_": data()}, "default"),
    ("async.data.c ? async.data.missing : 2", {"async_": data(c=False)}, 2),
    ("event.data.x == vars.x", {"event": data(x=1), "vars": {"x": 1}}, True),
]


@pytest.mark.parametrize(("source", "inputs", "expected"), LENIENCY)
def test_leniency(source: str, inputs: dict[str, Any], expected: Any) -> None:
    value = compile(source).evaluate(**inputs)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "source",
    [
        "async.data.missing == 1",
        "async.data.missing && true",
        "async.data.missing ? true : true",
        "async.data.missing.exists(x, true)",
    ],
)
def test_missing_fields_are_unknown_not_errors(source: str) -> None:
    outcome = compile(source).run(async_=data())
    assert outcome.kind in ("value", "unknown")
    assert not compile(source).matches(async_=data())


def test_errors_are_outcomes_not_exceptions() -> None:
    outcome = compile("1 / async.data.zero").run(async_=data(zero=0))
    assert outcome.kind == "error" and "divide by zero" in (outcome.error or "")
    assert compile("async.data.s < 1").run(async_=data(s="a")).kind == "error"
    assert not compile("async.data.s < 1").matches(async_=data(s="a"))


def test_matches_only_on_true() -> None:
    assert compile("async.data.x").matches(async_=data(x=True))
    assert not compile("async.data.x").matches(async_=data(x="yes"))
    assert not compile("async.data.x").matches(async_=data(x=1))


def test_compile_cache_returns_the_same_program() -> None:
    assert compile("async.data.q == 'cache'") is compile("async.data.q == 'cache'")
    assert compile("async.data.q == 'a'").shape is compile("async.data.q == 'b'").shape


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("event.data.x ==", "ends too early"),
        ("user.email == 'a'", "undeclared reference to 'user'"),
        ("foo(event.data.x)", "undeclared reference to 'foo'"),
        ("lowercase('a', 'b')", "lowercase() takes 1 argument, got 2"),
        ("now(1)", "now() takes 0 arguments"),
        ("'abc", "never closed"),
        ("_lit.s0 == 'a'", "undeclared reference to '_lit'"),
        ("has(event)", "has() takes one field selection"),
        ("", "empty"),
    ],
)
def test_invalid_expressions_say_why(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(source)
    assert issubclass(ExpressionError, ValueError)


def test_now_reads_the_given_clock() -> None:
    clock = TestClock(start_ms=1_700_000_000_000)
    at = datetime.fromtimestamp(1_700_000_000, UTC)
    assert compile("now()").evaluate(clock=clock) == at
    program = compile("date(async.data.at) < now_minus('1h')")
    event = data(at="2023-11-14T20:00:00Z")  # 2h13m20s before the clock
    assert program.matches(async_=event, clock=clock)
    earlier = TestClock(start_ms=1_700_000_000_000 - 3 * 3_600_000)
    assert not program.matches(async_=event, clock=earlier)
    assert compile("now_plus('1d') - now() == duration('24h')").matches(clock=clock)
    assert compile("now_plus('1w') > now_plus('6d')").matches(clock=clock)


def test_custom_functions() -> None:
    assert compile("lowercase('ÀBC')").evaluate() == "àbc"
    assert compile("uppercase(async.data.s)").evaluate(async_=data(s="ab")) == "AB"
    assert compile("b64decode('not base64!')").evaluate() == ""
    assert compile("json_parse('[1, 2]')").evaluate() == {}
    assert compile("json_parse('{\"a\": [1]}').a[0]").evaluate() == 1
    assert compile("date(1700000000) == date(1700000000000)").evaluate() is True
    assert compile("date('nonsense')").run().kind == "error"
    assert compile("now_plus('soon')").run().kind == "error"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:20:30Z", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30.250+01:00", datetime(2024, 3, 1, 9, 20, 30, 250000, tzinfo=UTC)),
        ("2024-03-01T10:20:30", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("Fri, 01 Mar 2024 10:20:30 GMT", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("01 Mar 24 10:20 -0200", datetime(2024, 3, 1, 12, 20, tzinfo=UTC)),
        ("Fri Mar  1 10:20:30 UTC 2024", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("Fri Mar 01 10:20:30 +0000 2024", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
    ],
)
def test_date_formats(text: str, expected: datetime) -> None:
    assert parse_date_string(text) == expected


def test_date_integers_by_magnitude() -> None:
    assert parse_date_int(1_700_000_000) == parse_date_int(1_700_000_000_000)
    assert parse_date_int(1_700_000_000_000_000_000) == parse_date_int(1_700_000_000)
    with pytest.raises(ValueError, match="before the year 2000"):
        parse_date_int(12345)


@pytest.mark.parametrize(
    ("value", "text"),
    [(9.1, "9.1"), (5.0, "5"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05"),
     (0.0001, "0.0001"), (1234567.0, "1.234567e+06"), (True, "true"), (-2.5, "-2.5"), (7, "7")],
)  # fmt: skip
def test_go_format(value: object, text: str) -> None:
    assert go_format(value) == text


def test_evaluation_never_writes_into_the_event() -> None:
    event = {"data": {"a": {"b": 1, "c": 2}}}
    program = compile("async.data.a == async.data.a && async.data.a.b == 1")
    assert program.matches(async_=event)
    assert event == {"data": {"a": {"b": 1, "c": 2}}}
