"""The event list filters internal events in the query, and totalCount counts (issue 13, row 9).
Runs on both store backends (PYNGEST_TEST_BACKEND=postgres for PostgreSQL)."""

from __future__ import annotations

import orjson

from pyngest.protocol.ids import new_ulid
from pyngest.server.model import Batch, InsertEvents, StoredEvent
from tests.integration.dashboard.conftest import gql
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
