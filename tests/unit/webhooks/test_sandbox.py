"""The webhook transform sandbox (server/webhooks/sandbox.py) on its own: what a transform
sees, what it may not do, and the messages its failures give."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyngest.server.webhooks.sandbox import (
    DEFAULT_TRANSFORM,
    Sandbox,
    TransformError,
    canonical_header,
)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(timeout_ms=1000, memory_bytes=16 * 1024 * 1024)
    yield box
    box.close()


async def _run(box: Sandbox, source: str, raw: str = "{}", **kw: Any) -> Any:
    return await box.run(source, raw=raw, evt=None, parse=True, headers=kw.get("headers", {}),
                         query=kw.get("query", {}))


def test_header_names_are_canonical_as_go_makes_them() -> None:
    assert canonical_header("x-github-event") == "X-Github-Event"
    assert canonical_header("STRIPE-SIGNATURE") == "Stripe-Signature"
    assert canonical_header("content-type") == "Content-Type"


async def test_the_default_transform_makes_upstreams_default_event(sandbox: Sandbox) -> None:
    assert await _run(sandbox, DEFAULT_TRANSFORM, '{"a": [1, 2]}') == {
        "name": "webhook/request.received", "data": {"a": [1, 2]}}


async def test_arguments_reach_the_transform_as_documented(sandbox: Sandbox) -> None:
    source = "function transform(evt, headers, queryParams, raw) { return [evt, headers, queryParams, raw]; }"
    out = await _run(sandbox, source, '{"k": "\\u2028é"}', headers={"X-A": "1"}, query={"q": ["1", "2"]})
    assert out == [{"k": "\u2028é"}, {"X-A": "1"}, {"q": ["1", "2"]}, '{"k": "\\u2028é"}']
    # a form body arrives already as an object
    form = await sandbox.run(source, raw="a=1", evt={"a": "1"}, parse=False, headers={}, query={})
    assert form[0] == {"a": "1"} and form[3] == "a=1"


async def test_node_style_exports_and_es2020_syntax_work(sandbox: Sandbox) -> None:
    source = "const t = (evt, h = {}) => ({name: `x/${evt?.type ?? 'none'}`, data: {...evt}});\nexports.transform = t;"
    assert await _run(sandbox, source, '{"type": "a"}') == {"name": "x/a", "data": {"type": "a"}}


async def test_nothing_survives_from_one_request_to_the_next(sandbox: Sandbox) -> None:
    source = "var seen = (globalThis.seen || 0) + 1; globalThis.seen = seen; function transform() { return seen; }"
    assert [await _run(sandbox, source) for _ in range(3)] == [1, 1, 1]


async def test_no_network_files_or_modules(sandbox: Sandbox) -> None:
    source = ("function transform() { return [typeof fetch, typeof require, typeof process, typeof XMLHttpRequest,"
              " typeof Deno, typeof import.meta]; }")
    with pytest.raises(TransformError, match="not valid JavaScript"):
        await _run(sandbox, source)  # import.meta is only allowed in modules
    out = await _run(sandbox, source.replace(", typeof import.meta", ""))
    assert out == ["undefined"] * 5


@pytest.mark.parametrize(("source", "message"), [
    ("function transform() { throw new TypeError('bad') }", "the transform threw an error: TypeError: bad"),
    ("function transform() { while (true) {} }", "ran longer than its time limit of 1000 ms"),
    ("while (true) {} function transform() {}", "ran longer than its time limit of 1000 ms"),
    ("function transform() { return undefined }", "returned undefined"),
    ("function transform() { return 10n }", "BigInt"),
    ("function nope() {}", "must define function transform"),
    ("function transform( {", "not valid JavaScript: SyntaxError"),
])
async def test_failures_say_what_went_wrong(sandbox: Sandbox, source: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        await _run(sandbox, source)


async def test_a_transform_over_its_memory_limit_is_stopped() -> None:
    # Its own sandbox with a time limit far beyond what filling 16 MiB takes, so that on a loaded
    # machine the time limit cannot be what stops it first.
    box = Sandbox(timeout_ms=60_000, memory_bytes=16 * 1024 * 1024)
    try:
        with pytest.raises(TransformError, match="more than its memory limit of"):
            await _run(box, "function transform() { const a = []; for (;;) a.push(new Float64Array(1 << 16)); }")
    finally:
        box.close()


async def test_checking_a_transform_compiles_it_without_calling_it(sandbox: Sandbox) -> None:
    await sandbox.check("function transform() { throw new Error('never called') }")
    with pytest.raises(TransformError, match="must define"):
        await sandbox.check("var transform = 3")


# Upstream's transform runner is not public; its dashboard preview evaluates the call and shows
# the value as it is, so a Promise never becomes an event there. pyngest awaits a Promise within
# the same time limit (docs/compatibility.md), or says clearly why it could not.
async def test_an_async_transform_is_awaited_within_the_time_limit(sandbox: Sandbox) -> None:
    source = "async function transform(evt) { return {name: 'a/b', data: evt}; }"
    assert await _run(sandbox, source, '{"k": 1}') == {"name": "a/b", "data": {"k": 1}}
    # it may wait for a timer, and return an array
    timer = ("async function transform(evt) { await new Promise((r) => setTimeout(r, 5));"
             " return [{name: 'x', data: evt}]; }")
    assert await _run(sandbox, timer, '{"k": 2}') == [{"name": "x", "data": {"k": 2}}]
    # a plain function returning a thenable counts as well
    thenable = "function transform(evt) { return Promise.resolve({name: 'p', data: {}}); }"
    assert await _run(sandbox, thenable) == {"name": "p", "data": {}}


@pytest.mark.parametrize(("source", "message"), [
    ("async function transform() { throw new Error('no type'); }",
     "the transform's Promise was rejected: Error: no type"),
    ("function transform() { return Promise.reject('refused'); }", "the transform's Promise was rejected: refused"),
    ("async function transform() { await new Promise(() => {}); }",
     "the transform ran longer than its time limit of 200 ms (its Promise did not settle)"),
    # still busy after an await: terminated at the deadline like a synchronous loop
    ("async function transform() { await null; while (true) {} }", "the transform ran longer than its time limit"),
    ("async function transform() { await new Promise((r) => setTimeout(r, 1)); while (true) {} }",
     "the transform ran longer than its time limit"),
    ("async function transform() {}", "the transform returned undefined"),
])
async def test_an_async_transform_that_gives_no_event_says_why(source: str, message: str) -> None:
    box = Sandbox(timeout_ms=200, memory_bytes=16 * 1024 * 1024)
    try:
        with pytest.raises(TransformError) as failed:
            await _run(box, source)
    finally:
        box.close()
    assert str(failed.value).startswith(message), str(failed.value)
