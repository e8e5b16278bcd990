"""The index against brute force: for random expressions and random events it reports exactly
the expressions whose compiled program matches, no more and no fewer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyngest.expr import compile
from pyngest.expr import index as index_module
from pyngest.expr import program as program_module
from pyngest.expr.index import ExpressionIndex, PauseIndex, TriggerIndex
from tests.unit.expr.strategies import events, expressions


def _brute_force(stored: dict[int, str], event: dict[str, Any], var: str) -> set[int]:
    key = "async_" if var == "async" else "event"
    return {k for k, src in stored.items() if compile(src).matches(**{key: event})}


# Across this file's tests: some 4,000 random expressions and over 1,000 random events, each
# expression checked against each event of its example.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    exprs=st.lists(expressions("async"), min_size=20, max_size=50),
    evs=st.lists(events("app/e"), min_size=4, max_size=16),
)
def test_pause_index_matches_brute_force(exprs: list[str], evs: list[dict[str, Any]]) -> None:
    index = PauseIndex()
    stored = dict(enumerate(exprs))
    for key, src in stored.items():
        index.add(key, "app/e", src)
    for event in evs:
        assert set(index.match(event)) == _brute_force(stored, event, "async"), event


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    exprs=st.lists(expressions("event"), min_size=10, max_size=40),
    evs=st.lists(events("app/user.created"), min_size=2, max_size=10),
)
def test_trigger_index_matches_brute_force(exprs: list[str], evs: list[dict[str, Any]]) -> None:
    index = TriggerIndex()
    stored = dict(enumerate(exprs))
    for key, src in stored.items():
        index.add(key, "app/user.*" if key % 2 else "app/user.created", src)
    for event in evs:
        assert sorted(index.match(event)) == sorted(_brute_force(stored, event, "event"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 15), expressions("async")), min_size=1, max_size=80
    ),
    evs=st.lists(events("app/e"), min_size=1, max_size=5),
)
def test_adds_and_removes_keep_the_index_exact(
    ops: list[tuple[bool, int, str]], evs: list[dict[str, Any]]
) -> None:
    index = ExpressionIndex("async")
    model: dict[int, str] = {}
    for add, key, src in ops:
        if add:
            index.add(key, "app/e", src)
            model[key] = src
        else:
            assert index.remove(key) == (key in model)
            model.pop(key, None)
    assert len(index) == len(model)
    for event in evs:
        assert set(index.match("app/e", event)) == _brute_force(model, event, "async")
    for key in list(model):
        index.remove(key)
    assert len(index) == 0 and not index._buckets


def test_other_event_names_are_never_evaluated() -> None:
    index = PauseIndex()
    index.add("p", "app/other", "async.data.a.exists(x, x == 1)")
    assert index.match({"name": "app/e", "data": {"a": [1]}}) == []
    assert index.match({"name": "app/other", "data": {"a": [1]}}) == ["p"]


def test_only_candidates_are_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 equality pauses and a few that nothing indexes: an event costs one hash lookup
    per field plus the evaluations of its own candidates, not 10,000 evaluations."""
    index = PauseIndex()
    for i in range(10_000):
        index.add(f"eq-{i}", "app/e", f'async.data.userId == "u{i}"')
    index.add("range", "app/e", 'async.data.userId == "u7" && async.data.total > 100')
    index.add("opaque-1", "app/e", 'async.data.note.startsWith("x")')
    index.add("opaque-2", "app/e", 'async.data.note.startsWith("y")')
    evaluated: list[int] = []
    real = program_module.matches_many

    def counting(programs: Any, **inputs: Any) -> list[bool]:
        evaluated.append(len(programs))
        return real(programs, **inputs)

    monkeypatch.setattr(index_module, "matches_many", counting)
    event = {"name": "app/e", "data": {"userId": "u7", "total": 50, "note": "x1"}}
    assert sorted(index.match(event)) == ["eq-7", "opaque-1"]
    # "range" fails its formula in Python (total > 100) without any CEL evaluation;
    # the two opaque pauses share a shape and are evaluated in one call.
    assert sorted(evaluated) == [1, 2]


@settings(max_examples=30, deadline=None)
@given(
    literals=st.lists(
        st.tuples(
            st.sampled_from(["x", "y", "z"]), st.integers(-2, 2), st.sampled_from(["x", "y"])
        ),
        min_size=2,
        max_size=40,
    ),
    evs=st.lists(events("app/e"), min_size=1, max_size=5),
)
def test_many_expressions_of_one_shape_are_confirmed_together(
    literals: list[tuple[str, int, str]], evs: list[dict[str, Any]]
) -> None:
    # Same shape, three literals each: candidates are confirmed by one batched CEL call.
    stored = {
        i: f'(async.data.a == "{a}" || async.data.s == "{s}") && !(async.data.n < {n})'
        for i, (a, n, s) in enumerate(literals)
    }
    index = PauseIndex()
    for key, src in stored.items():
        index.add(key, "app/e", src)
    for event in evs:
        assert set(index.match(event)) == _brute_force(stored, event, "async")


def test_index_evaluates_now_with_its_clock() -> None:
    from pyngest.clock import TestClock

    clock = TestClock(start_ms=1_700_000_000_000)  # 2023-11-14T22:13:20Z
    index = PauseIndex(clock=clock)
    index.add("recent", "app/e", "date(async.data.at) > now_minus('1h')")
    event = {"name": "app/e", "data": {"at": "2023-11-14T21:30:00Z"}}
    assert index.match(event) == ["recent"]
    clock.advance(3_600_000)
    assert index.match(event) == []


def test_confirming_many_candidates_of_one_shape_stays_linear() -> None:
    """Thousands of candidates of one shape for one event (expressions nothing indexes, or a
    cancelOn per run of one user): the answer is exact, and ten times the candidates cost
    about ten times the time. One CEL ``map`` over all of them costs their number squared
    (3,000 took half a second)."""
    import time

    def build(n: int) -> PauseIndex:
        index = PauseIndex()
        for i in range(n):
            index.add(i, "app/e", f'async.data.note.startsWith("urgent-{i % 7}")')
        return index

    event = {"name": "app/e", "data": {"note": "urgent-3"}}
    small, large = build(300), build(3000)
    assert sorted(large.match(event)) == [i for i in range(3000) if i % 7 == 3]

    def best(index: PauseIndex) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            index.match(event)
            times.append(time.perf_counter() - start)
        return min(times)

    ratio = best(large) / best(small)
    assert ratio < 40, f"10x the candidates cost {ratio:.0f}x the time"
