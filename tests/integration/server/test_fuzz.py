"""Hostile bodies for the Event API and ``/fn/register`` (issue 13): wrong types, deep nesting,
huge strings, invalid UTF-8, against a real dev server. Whatever comes in, no 5xx.

Bounded: a fixed number of examples, no shrinking (a failure is reported as found), no example
database (nothing is written to the tree).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.integration.server.test_cli import dev_server

FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


def _dumps(value: Any) -> bytes:
    """JSON text, integers of any size included (orjson refuses those beyond 64 bits)."""
    return json.dumps(value).encode()


def _nested(depth: int, open_: bytes, close: bytes) -> bytes:
    return open_ * depth + b"1" + close * depth


events = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=20), st.sampled_from(["app/x", "inngest/function.failed", ""]), json_values)},
    optional={"data": json_values, "user": json_values, "id": json_values, "ts": json_values, "v": json_values})

event_bodies = st.one_of(
    json_values.map(_dumps),
    events.map(_dumps),
    st.lists(events, max_size=6).map(_dumps),
    # nesting: around the event limit (100), the serializer's (255) and the parser's (1024)
    st.sampled_from([99, 101, 254, 256, 1023, 1025, 5000]).map(
        lambda d: b'{"name":"x/deep","data":{"a":' + _nested(d, b"[", b"]") + b"}}"),
    st.sampled_from([99, 300, 2000]).map(lambda d: b"[" + b'{"name":"x/ok"},' * 2 + _nested(d, b'{"a":', b"}") + b"]"),
    # huge strings: under and over the 3 MiB limits
    st.sampled_from([10_000, 3 * 1024 * 1024 - 100, 3 * 1024 * 1024 + 10]).map(
        lambda n: b'{"name":"x/big","data":{"s":"' + b"a" * n + b'"}}'),
    # invalid UTF-8 and arbitrary bytes
    st.binary(max_size=64).map(lambda b: b'{"name":"x/' + b + b'"}'),
    st.binary(max_size=256),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from dev_server(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def client(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=60) as c:
        yield c


@FUZZ
@given(body=event_bodies, content_type=st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]))
def test_event_api_never_answers_5xx(client: httpx.Client, body: bytes, content_type: str) -> None:
    resp = client.post("/e/key", content=body, headers={"content-type": content_type} if content_type else {})
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    answer = resp.json()
    assert isinstance(answer["ids"], list) and answer["status"] == resp.status_code


urls = st.one_of(st.text(max_size=20), json_values, st.sampled_from(
    ["http://127.0.0.1:9/api/inngest", "file:///etc/passwd", "gopher://127.0.0.1/", "http://", "HTTP://127.0.0.1:9/x", "http://h:99999/x"]))
triggers = st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "event": st.one_of(st.text(max_size=10), json_values),
    "expression": st.one_of(st.text(max_size=40), st.sampled_from(
        ["(" * 300 + "true" + ")" * 300, " || ".join(["event.data.a == 1"] * 300)]), json_values),
    "cron": st.one_of(st.text(max_size=12), json_values)})), max_size=3)
functions = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=12), json_values), "name": json_values, "triggers": triggers,
    "steps": st.one_of(json_values, st.fixed_dictionaries({"step": st.fixed_dictionaries({
        "id": st.just("step"), "runtime": st.fixed_dictionaries({"type": st.just("http"), "url": urls})})})),
    "concurrency": json_values, "batchEvents": json_values, "cancel": json_values, "retries": json_values})
register_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={
        "appName": st.one_of(st.text(max_size=12), json_values), "url": urls, "v": json_values,
        "sdk": json_values, "framework": json_values,
        "functions": st.one_of(json_values, st.lists(st.one_of(functions, json_values), max_size=4))}).map(_dumps),
    st.sampled_from([300, 2000]).map(lambda d: b'{"appName":"a","functions":' + _nested(d, b"[", b"]") + b"}"),
    st.sampled_from([4 * 1024 * 1024]).map(lambda n: b'{"appName":"a","url":"' + b"u" * n + b'"}'),
    st.binary(max_size=64).map(lambda b: b'{"appName":"' + b + b'","functions":[]}'),
    st.binary(max_size=256),
)


@FUZZ
@given(body=register_bodies)
# found by a longer run: an invalid function whose id is not a string (an object, a list)
@example(body=b'{"appName":"a","url":"http://127.0.0.1:9/x","functions":[{"id":{"a":1},"name":"x"}]}')
@example(body=b'{"appName":"a","url":"http://127.0.0.1:9/x","functions":[{"id":[1],"name":"x","triggers":[]}]}')
def test_register_never_answers_5xx(client: httpx.Client, body: Any) -> None:
    resp = client.post("/fn/register", content=body, headers={"content-type": "application/json"})
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
