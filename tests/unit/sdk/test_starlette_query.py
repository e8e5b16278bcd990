"""The Starlette/FastAPI adapter remembers parsed query strings: the same answers as parsing
each time, and a request's query dict is its own."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

import pytest
from starlette.requests import Request as StarletteRequest

from pyngest.starlette import query_pairs, to_request


@pytest.mark.parametrize("query", [
    b"", b"fnId=app-f&stepId=step", b"fnId=app-f&stepId=", b"a=1&a=2", b"x=%20y+z&probe=trust", b"flag", b"k=%C3%BC",
])
def test_remembered_pairs_are_parsed_pairs(query: bytes) -> None:
    expected = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    assert list(query_pairs(query)) == expected
    assert list(query_pairs(query)) == expected  # from the cache


def test_each_request_gets_a_query_dict_of_its_own() -> None:
    def request() -> StarletteRequest:
        scope = {"type": "http", "method": "POST", "headers": [(b"x-a", b"1")], "query_string": b"fnId=f&stepId=step",
                 "path": "/api/inngest"}

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        return StarletteRequest(scope, receive)

    first = asyncio.run(to_request(request()))
    first.query["fnId"] = "changed"  # type: ignore[index]
    second = asyncio.run(to_request(request()))
    assert second.query == {"fnId": "f", "stepId": "step"} and second.headers == {"x-a": "1"}
