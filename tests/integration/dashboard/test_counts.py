"""The event list filters internal events in the query, and totalCount counts (issue 13, row 9).
Runs on both store backends (PYNGEST_TEST_BACKEND=postgres for PostgreSQL)."""

from __future__ import annotations

import orjson

from pyngest.protocol.ids import new_ulid
from pyngest.server.model import Batch, InsertEvents, StoredEvent
from tests.integration.dashboard.conftest import gql, gql_error
from tests.integration.server.harness import Harness

EVENTS = """query($first: Int!, $from: Time!, $internal: Boolean, $after: String) {
  eventsV2(first: $first, after: $after, filter: {from: $from, includeInternalEvents: $internal}) {
    totalCount edges { node { name } } pageInfo { hasNextPage endCursor } } }"""
RUNS = """query($first: Int!, $from: Time!) {
  runs(first: $first, orderBy: [{field: QUEUED_AT, direction: DESC}], filter: {from: $from}) {
    totalCount edges { node { id } } } }"""


async def _internal_events(h: Harness, n: int) -> None:
    now = h.clock.now_ms()
    events = [StoredEvent(new_ulid(), "inngest/function.finished", new_ulid(), now, now,
                          orjson.dumps({"name": "inngest/function.finished", "data": {}})) for _ in range(n)]
    await h.service.state.commit(Batch([InsertEvents(events)]))


async def test_the_event_list_skips_internal_events_in_the_query(harness: Harness) -> None:
    since = "2020-01-01T00:00:00Z"
    for event_id in await harness.send(*[{"name": "test/work", "data": {"n": i}} for i in range(3)]):
        await harness.run_ended(event_id)  # its run's own inngest/ events are stored by now
    await _internal_events(harness, 30)  # the newest 30 rows are internal
    page = (await gql(harness, EVENTS, first=25, **{"from": since}))["eventsV2"]
    assert [e["node"]["name"] for e in page["edges"]] == ["test/work"] * 3
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"] is False
    everything = (await gql(harness, EVENTS, first=25, internal=True, **{"from": since}))["eventsV2"]
    total = everything["totalCount"]
    assert len(everything["edges"]) == 25 and total >= 33
    rest = (await gql(harness, EVENTS, first=25, internal=True, after=everything["pageInfo"]["endCursor"],
                      **{"from": since}))["eventsV2"]
    assert len(rest["edges"]) == total - 25 and rest["totalCount"] == total


async def test_runs_total_count_is_every_matching_run(harness: Harness) -> None:
    ids = await harness.send(*[{"name": "test/work", "data": {"n": i}} for i in range(7)])
    for event_id in ids:
        await harness.run_ended(event_id)
    page = (await gql(harness, RUNS, first=2, **{"from": "2020-01-01T00:00:00Z"}))["runs"]
    assert len(page["edges"]) == 2 and page["totalCount"] == 7


SEARCH_RUNS = """query($first: Int!, $from: Time!, $search: String, $after: String) {
  runs(first: $first, after: $after, orderBy: [{field: QUEUED_AT, direction: DESC}],
       filter: {from: $from, query: $search}) {
    totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
SEARCH_EVENTS = """query($first: Int!, $from: Time!, $search: String, $names: [String!], $after: String) {
  eventsV2(first: $first, after: $after, filter: {from: $from, query: $search, eventNames: $names}) {
    totalCount edges { node { name raw } } pageInfo { hasNextPage endCursor } } }"""
SINCE = "2020-01-01T00:00:00Z"


async def test_runs_total_count_with_a_search_counts_every_match_not_the_page(harness: Harness) -> None:
    ids = await harness.send(*[{"name": "test/work", "data": {"n": i}} for i in range(12)])
    for event_id in ids:
        await harness.run_ended(event_id)
    search = "event.data.n >= 3\noutput.ok == true"  # two lines: both must hold; 9 runs match
    page = (await gql(harness, SEARCH_RUNS, first=2, search=search, **{"from": SINCE}))["runs"]
    assert len(page["edges"]) == 2 and page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] == 9
    seen = [e["node"]["id"] for e in page["edges"]]
    while page["pageInfo"]["hasNextPage"]:
        page = (await gql(harness, SEARCH_RUNS, first=4, search=search, after=page["pageInfo"]["endCursor"],
                          **{"from": SINCE}))["runs"]
        assert page["totalCount"] == 9  # the count of all matches, wherever the page is
        seen += [e["node"]["id"] for e in page["edges"]]
    assert len(seen) == len(set(seen)) == 9
    none = (await gql(harness, SEARCH_RUNS, first=5, search="event.data.n > 100", **{"from": SINCE}))["runs"]
    assert none["totalCount"] == 0 and none["edges"] == []


async def test_events_search_filters_by_expression_and_counts_every_match(harness: Harness) -> None:
    await harness.send(*[{"name": "test/work" if i % 2 else "test/other", "data": {"n": i}} for i in range(14)])
    page = (await gql(harness, SEARCH_EVENTS, first=3, search="event.data.n >= 4", **{"from": SINCE}))["eventsV2"]
    assert page["totalCount"] == 10 and len(page["edges"]) == 3 and page["pageInfo"]["hasNextPage"] is True
    found = [orjson.loads(e["node"]["raw"])["data"]["n"] for e in page["edges"]]
    while page["pageInfo"]["hasNextPage"]:
        page = (await gql(harness, SEARCH_EVENTS, first=3, search="event.data.n >= 4",
                          after=page["pageInfo"]["endCursor"], **{"from": SINCE}))["eventsV2"]
        assert page["totalCount"] == 10
        found += [orjson.loads(e["node"]["raw"])["data"]["n"] for e in page["edges"]]
    assert found == list(range(13, 3, -1))  # newest first, each once
    # with event names as well, and a search over the name
    named = (await gql(harness, SEARCH_EVENTS, first=50, search="event.data.n < 6", names=["test/work"],
                       **{"from": SINCE}))["eventsV2"]
    assert named["totalCount"] == 3 and {e["node"]["name"] for e in named["edges"]} == {"test/work"}
    by_name = (await gql(harness, SEARCH_EVENTS, first=1, search='event.name == "test/other"',
                         **{"from": SINCE}))["eventsV2"]
    assert by_name["totalCount"] == 7 and len(by_name["edges"]) == 1


async def test_an_invalid_search_expression_is_a_clear_error(harness: Harness) -> None:
    message = await gql_error(harness, SEARCH_EVENTS, first=5, search="event.data.n >", **{"from": SINCE})
    assert "search expression is invalid" in message
    long = 'event.data.n == "' + "a" * 100_000 + '"'  # checked before it is parsed (or rewritten)
    for query in (SEARCH_EVENTS, SEARCH_RUNS):
        message = await gql_error(harness, query, first=5, search=long, **{"from": SINCE})
        assert "characters long; the limit is 16384" in message, message
