"""The live feed and Prometheus metrics per environment (issue 15): the same app synced into
production and a branch, events sent to both, and each environment's feed and scrape tell of
its own runs only.

Runs on both stores (``PYNGEST_TEST_BACKEND=postgres``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from pyngest.server.api.app import build_app
from pyngest.server.model import DEFAULT_ENV
from tests.integration.server.harness import Harness, Reply, done
from tests.integration.server.test_environments import (
    EVENT_KEY,
    SIGNING_KEY,
    bearer,
    client,
    send,
    sync,
)

BRANCH = "feature-m"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, mode="start", signing_key=SIGNING_KEY, event_keys=[EVENT_KEY])
    await harness.start()

    async def script(call: Any) -> Reply:
        return done("ok")

    harness.app.script = script
    await sync(harness)
    await sync(harness, env=BRANCH)
    try:
        yield harness
    finally:
        await harness.stop()


def branch_id(h: Harness) -> str:
    env = h.service.registry.envs.by_name(BRANCH, DEFAULT_ENV)
    assert env is not None
    return env.id


async def runs_ended(h: Harness, event_id: str, env: str | None = None) -> list[str]:
    headers = {**bearer(SIGNING_KEY), **({"x-inngest-env": env} if env else {})}
    deadline = time.monotonic() + 10
    while True:
        runs = (await client(h).get(f"/v1/events/{event_id}/runs", headers=headers)).json()["data"]
        if runs and all(r["status"] == "Completed" for r in runs):
            return [r["run_id"] for r in runs]
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.01)


async def test_metrics_scrape_one_environment_with_upstreams_labels(h: Harness) -> None:
    prod_events = [(await send(h, "shop/order")).json()["ids"][0]]
    branch_events = [(await send(h, "shop/order", env=BRANCH)).json()["ids"][0] for _ in range(2)]
    for eid in prod_events:
        await runs_ended(h, eid)
    for eid in branch_events:
        await runs_ended(h, eid, BRANCH)
    date = time.strftime("%Y-%m-%d", time.gmtime(h.clock.now_ms() / 1000))
    line = 'inngest_function_run_ended_total{date="%s",fn="test-order",status="Completed"} %d'

    prod = await client(h).get("/metrics", headers=bearer(SIGNING_KEY))
    assert prod.status_code == 200 and line % (date, 1) in prod.text
    # by header, by query parameter (a Prometheus scrape config's params:), by name or id
    for kwargs in ({"headers": {**bearer(SIGNING_KEY), "x-inngest-env": BRANCH}},
                   {"headers": bearer(SIGNING_KEY), "params": {"x-inngest-env": branch_id(h)}}):
        scraped = await client(h).get("/metrics", **kwargs)  # type: ignore[arg-type]
        assert scraped.status_code == 200, scraped.text
        assert line % (date, 2) in scraped.text
        assert f'inngest_function_run_scheduled_total{{date="{date}",fn="test-order"}} 2' in scraped.text
        assert "env=" not in scraped.text  # upstream's labels, no more
    missing = await client(h).get("/metrics", headers={**bearer(SIGNING_KEY), "x-inngest-env": "nope"})
    assert missing.status_code == 404 and "not found" in missing.text


async def test_live_feed_tells_each_environment_of_its_own_runs(h: Harness) -> None:
    hub = h.service.live
    prod_feed, branch_feed = hub.subscribe(DEFAULT_ENV), hub.subscribe(branch_id(h))
    try:
        prod_runs = await runs_ended(h, (await send(h, "shop/order")).json()["ids"][0])
        branch_runs = await runs_ended(h, (await send(h, "shop/order", env=BRANCH)).json()["ids"][0], BRANCH)
        await asyncio.sleep(3 * hub.interval_s)  # every flush has happened

        def drained(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
            out = []
            while not queue.empty():
                out.append(queue.get_nowait())
            return out

        prod_msgs, branch_msgs = drained(prod_feed), drained(branch_feed)
        assert {m["env"] for m in prod_msgs} == {DEFAULT_ENV}
        assert {m["env"] for m in branch_msgs} == {branch_id(h)}
        prod_seen = {r for m in prod_msgs for r in m["runs"]}
        branch_seen = {r for m in branch_msgs for r in m["runs"]}
        assert set(prod_runs) <= prod_seen and not prod_seen & set(branch_runs)
        assert set(branch_runs) <= branch_seen and not branch_seen & set(prod_runs)
        assert sum(m["newRuns"] for m in prod_msgs) == sum(m["newRuns"] for m in branch_msgs) == 1
        assert "shop/order" in {e for m in branch_msgs for e in m["events"]}  # and its inngest/function.finished
    finally:
        hub.unsubscribe(prod_feed)
        hub.unsubscribe(branch_feed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_live_stream_selects_its_environment_as_the_dashboard_asks(h: Harness) -> None:
    """Over a real socket, as the dashboard's EventSource: ``?x-inngest-env=<id>``."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(h.service), host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer(SIGNING_KEY),
                                     timeout=10) as http:
            missing = await http.get("/v0/live", params={"x-inngest-env": "nope"})
            assert missing.status_code == 404
            async with http.stream("GET", "/v0/live", params={"x-inngest-env": branch_id(h)}) as stream:
                lines = stream.aiter_lines()
                assert await anext(lines) == "retry: 1000"
                await send(h, "shop/order")  # production's: not on this stream
                branch_runs = await runs_ended(h, (await send(h, "shop/order", env=BRANCH)).json()["ids"][0],
                                               BRANCH)
                seen: set[str] = set()
                async with asyncio.timeout(10):
                    while not set(branch_runs) <= seen:
                        line = await anext(lines)
                        if line.startswith("data: {\""):
                            msg = orjson.loads(line[6:])
                            assert msg["env"] == branch_id(h), msg
                            seen |= set(msg["runs"])
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
