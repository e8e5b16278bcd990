"""Dev-mode discovery and re-sync, on the test clock: apps on real sockets, the server in process.

- Discovery keeps scanning: an app started on a scanned port while another app is already
  synced appears within one poll interval, and the known app's port gets no probes.
- Re-sync keeps apps' logs quiet: an unchanged, healthy app is re-synced at a doubling interval
  (poll interval, 2x, 4x ... up to RESYNC_CAP_S); a change brings it back to the poll interval.
- The apps page's facts are true: when the app last synced, and how.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from pyngest.server import sync
from tests.integration.server.harness import Harness

POLL_MS = 5_000


class SdkApp:
    """A serve endpoint that answers like an SDK: GET introspection, PUT -> POST /fn/register."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness = harness
        self.name = name
        self.gets: list[int] = []  # test-clock times of GETs (discovery probes)
        self.puts: list[int] = []  # test-clock times of PUTs (syncs)
        self.trigger = f"{name}/go"
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    async def bind(self, port: int = 0) -> int:
        """Serve on ``port`` (0: a free one)."""
        app = web.Application()
        app.router.add_get("/api/inngest", self._introspect)
        app.router.add_put("/api/inngest", self._sync)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _introspect(self, request: web.Request) -> web.Response:
        self.gets.append(self.harness.clock.now_ms())
        return web.json_response({"function_count": 1, "mode": "dev"}, headers={"X-Inngest-SDK": "inngest-py:v0.5.19"})

    async def _sync(self, request: web.Request) -> web.Response:
        self.puts.append(self.harness.clock.now_ms())
        assert self.harness.http is not None
        slug = f"{self.name}-fn"
        reg = await self.harness.http.post("/fn/register", json={
            "appName": self.name, "url": self.url, "sdk": "py:v0.5.19", "framework": "fast_api",
            "functions": [{"id": slug, "name": slug, "triggers": [{"event": self.trigger}], "steps": {"step": {
                "id": "step", "name": "step", "runtime": {"type": "http", "url": f"{self.url}?fnId={slug}&stepId=step"}}}}],
        })
        return web.json_response(reg.json(), status=reg.status_code)


async def until(harness: Harness, cond: Callable[[], Any], what: str) -> None:
    for _ in range(1000):
        if cond():
            return
        await harness.settle(2)
    raise AssertionError(f"timed out waiting for {what}")


async def idle(harness: Harness) -> None:
    """Wait until the sync loop has done its round and sleeps until the next poll."""
    clock = harness.clock
    await until(harness, lambda: clock.has_timer_at(clock.now_ms() + POLL_MS), "the sync loop to sleep again")


async def tick(harness: Harness) -> None:
    harness.clock.advance(POLL_MS)
    await idle(harness)


@pytest.fixture
async def apps(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Any:
    first, later = SdkApp(harness, "first"), SdkApp(harness, "later")
    ports = [await first.bind()]
    # the later app's port: scanned, but nothing answers there until the app starts
    probe = web.AppRunner(web.Application())
    await probe.setup()
    site = web.TCPSite(probe, "127.0.0.1", 0)
    await site.start()
    ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    await probe.cleanup()
    monkeypatch.setattr(sync, "DEV_DISCOVERY_PORTS", ports)
    harness.config.discovery = True
    harness.config.poll = True
    harness.config.poll_interval_s = POLL_MS / 1000
    harness.config.sdk_urls = [first.url]
    yield first, later, ports[1]
    await first.stop()
    await later.stop()


async def test_an_app_started_later_is_found_while_another_is_synced(harness: Harness, apps: Any) -> None:
    first, later, later_port = apps
    syncer = harness.service.syncer
    await syncer.start()
    await until(harness, lambda: first.puts and harness.service.registry.app_by_url(first.url), "the first app")
    await idle(harness)
    probes_before = len(first.gets)
    # the later app starts on its scanned port, while the first one is synced
    await later.bind(later_port)
    await tick(harness)
    assert harness.service.registry.app_by_url(later.url), "found within one poll interval"
    assert later.gets, "found by a discovery probe"
    assert syncer.urls[sync.normalize_url(later.url)].source == "discovery"
    assert len(first.gets) == probes_before, "the known app's port is not probed"


async def test_an_unchanged_app_is_re_synced_less_and_less_often(harness: Harness, apps: Any) -> None:
    first, _, _ = apps
    await harness.service.syncer.start()
    await until(harness, lambda: first.puts, "the sync at start")
    await idle(harness)
    for _ in range(400_000 // POLL_MS):
        await tick(harness)
    gaps = [b - a for a, b in zip(first.puts, first.puts[1:], strict=False)]
    # 5, 10, 20, 40 s, then every 60 s (seen at the first 5 s clock step at or after each due time)
    assert gaps[:4] == [5_000, 10_000, 20_000, 40_000], gaps
    assert set(gaps[4:]) == {60_000}, gaps
    # the apps page's facts
    assert harness.http is not None
    res = await harness.http.post("/v0/gql", json={"query": "{ apps { name lastSyncedAt syncedBy resyncIntervalSeconds } }"})
    [fact] = res.json()["data"]["apps"]
    assert fact["syncedBy"] == sync.BY_POLL and fact["resyncIntervalSeconds"] == 60.0
    assert fact["lastSyncedAt"]


async def test_a_sync_from_outside_brings_the_interval_back(harness: Harness, apps: Any) -> None:
    first, _, _ = apps
    syncer = harness.service.syncer
    await syncer.start()
    await until(harness, lambda: first.puts, "the sync at start")
    await idle(harness)
    for _ in range(7):  # syncs at 5 s and 15 s: the interval has grown to 20 s
        await tick(harness)
    assert syncer.state(first.url).interval_s > POLL_MS / 1000
    # a user's `curl -X PUT` on the app: it registers without the server asking
    assert harness.http is not None
    await first._sync(None)  # type: ignore[arg-type]
    st = syncer.state(first.url)
    assert st.synced_by == sync.BY_APP and st.interval_s == POLL_MS / 1000
