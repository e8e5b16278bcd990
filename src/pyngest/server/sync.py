"""Finding and syncing apps: the server PUTs an app's serve URL, the app answers by POSTing
its configuration to ``/fn/register`` (PROTOCOL.md §2.1).

In dev mode the server also keeps scanning the usual local ports for serve endpoints (every
poll interval, skipping the ports of apps it knows, so an app started later appears within
seconds while the known apps' logs get no probes), and re-syncs the apps it knows. A re-sync
is one PUT (and the app's POST back); to keep apps' access logs quiet, an app whose
configuration did not change is re-synced at a growing interval: the poll interval, then
twice that, and so on up to ``RESYNC_CAP_S``. A change, a failure or a sync from elsewhere
brings it back to the poll interval. An app whose sync failed is retried every poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson

from pyngest.clock import Clock
from pyngest.protocol import headers as H
from pyngest.protocol import signing
from pyngest.server.config import DEV_DISCOVERY_PATHS, DEV_DISCOVERY_PORTS, ServerConfig
from pyngest.server.registry import Registry, normalize_url
from pyngest.server.store.base import AppUrlRecord, Store
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.sync")

SYNC_TIMEOUT = aiohttp.ClientTimeout(total=10)
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=1.0, sock_connect=0.5)
RESYNC_CAP_S = 60.0  # the longest wait between two re-syncs of an unchanged, healthy app
LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")

# How an app's last successful sync came about (shown on the apps page).
BY_POLL = "re-synced by the dev server"
BY_DISCOVERY = "found by scanning local ports"
BY_START = "synced at start"
BY_REQUEST = "synced on request (dashboard or API)"
BY_APP = "the app registered itself (a PUT from outside the server)"


@dataclass(slots=True)
class SyncState:
    """When an app is re-synced next, and what its last sync was."""

    interval_s: float
    due_ms: int = 0
    in_flight: str | None = None  # why a PUT of ours is waiting for the app to register
    changed: bool = False  # whether the registration that answered it changed the app
    synced_ms: int | None = None
    synced_by: str | None = None


class AppSyncer:
    def __init__(self, config: ServerConfig, registry: Registry, store: Store, clock: Clock) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.urls: dict[str, AppUrlRecord] = {}
        self.states: dict[str, SyncState] = {}  # by normalized URL

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(skip_auto_headers=("User-Agent",))
        for rec in await self.store.list_app_urls():
            self.urls[rec.url] = rec
        for url in self.config.sdk_urls:
            await self.add(url, source="flag", sync=False)
        self._tasks.append(asyncio.create_task(self._initial()))
        if self.config.mode == "dev" or self.config.poll or self.config.discovery:
            self._tasks.append(asyncio.create_task(self._poll_loop()))

    async def close(self) -> None:
        await stop_tasks(self._tasks)
        if self._session is not None:
            await self._session.close()

    async def add(self, url: str, *, source: str, sync: bool = True) -> str | None:
        """Remember an app URL (and sync it). Returns the sync error, if any."""
        norm = normalize_url(url)
        if norm not in self.urls:
            rec = AppUrlRecord(url=url, source=source, created_ms=self.clock.now_ms())
            self.urls[norm] = rec
            await self.store.save_app_url(rec)
        how = BY_DISCOVERY if source == "discovery" else BY_REQUEST
        return await self.sync(url, how=how) if sync else None

    async def remove(self, url: str) -> None:
        norm = normalize_url(url)
        self.states.pop(norm, None)
        rec = self.urls.pop(norm, None)
        if rec is not None:
            await self.store.delete_app_url(rec.url)

    def state(self, url: str) -> SyncState:
        norm = normalize_url(url)
        st = self.states.get(norm)
        if st is None:
            st = self.states[norm] = SyncState(interval_s=self.config.poll_interval_s)
        return st

    def registered(self, url: str, *, modified: bool) -> None:
        """The app at ``url`` POSTed /fn/register successfully: after our PUT, or on its own."""
        st = self.state(url)
        st.synced_ms = self.clock.now_ms()
        st.changed = modified
        if st.in_flight is not None:
            st.synced_by = st.in_flight
        else:
            # someone else asked the app to sync (curl -X PUT, the SDK itself): start over
            st.synced_by = BY_APP
            self._reschedule(st, reset=True)

    def _reschedule(self, st: SyncState, *, reset: bool) -> None:
        base = self.config.poll_interval_s
        st.interval_s = base if reset else min(max(base, RESYNC_CAP_S), st.interval_s * 2)
        st.due_ms = self.clock.now_ms() + int(st.interval_s * 1000)

    async def sync(self, url: str, *, how: str = BY_REQUEST) -> str | None:
        """PUT the app so it registers. Returns None on success, else a message a person can act on."""
        assert self._session is not None
        st = self.state(url)
        st.in_flight, st.changed = how, False
        body = orjson.dumps({"url": url})
        hdrs = {"Content-Type": "application/json", "X-Inngest-Server-Kind": self.config.server_kind}
        # an app synced into another environment verifies our PUT with that environment's key
        app = self.registry.app_by_url(url)
        key = self.registry.envs.signing_key(app.env_id) if app is not None else self.config.signing_key
        if key:
            hdrs["X-Inngest-Signature"] = signing.sign(body, key, int(time.time()))
        error: str | None = None
        try:
            async with self._session.put(url, data=body, headers=hdrs, timeout=SYNC_TIMEOUT) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    error = _describe_failure(resp.status, text, url)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = f"could not reach the app at {url}: {exc.__class__.__name__} {exc}".strip()
        st.in_flight = None
        # unchanged and healthy: wait longer next time; anything else: back to the poll interval
        self._reschedule(st, reset=error is not None or st.changed or how != BY_POLL)
        rec = self.urls.get(normalize_url(url))
        changed = rec is None or rec.error != error
        if rec is not None:
            rec.error = error
            if error is None:
                rec.synced_ms = self.clock.now_ms()
                app = self.registry.app_by_url(url)
                rec.app_id = app.id if app else rec.app_id
            await self.store.save_app_url(rec)
        if error is not None and changed:
            # a failing app is retried every poll; say so once, not every few seconds
            await self.registry.record_sync_error(url, error)
            log.warning("sync of %s failed: %s (retrying every %.0f s)", url, error, self.config.poll_interval_s)
        elif error is None and changed:
            app = self.registry.app_by_url(url)
            log.info("synced %s%s", url, f" (app {app.name!r})" if app else "")
        return error

    async def _initial(self) -> None:
        await asyncio.gather(*(self.sync(rec.url, how=BY_START) for rec in list(self.urls.values())),
                             return_exceptions=True)

    async def _poll_loop(self) -> None:
        interval_ms = int(max(0.2, self.config.poll_interval_s) * 1000)
        while True:
            if self.config.mode == "dev" and self.config.discovery:
                await self.discover()
            await self.clock.sleep_until(self.clock.now_ms() + interval_ms)
            now = self.clock.now_ms()
            targets = [
                rec.url for rec in list(self.urls.values())
                if rec.error is not None or (self.config.poll and self.state(rec.url).due_ms <= now)
            ]
            await asyncio.gather(*(self.sync(u, how=BY_POLL) for u in targets), return_exceptions=True)

    def _known_ports(self) -> set[int]:
        """Local ports that already serve a known app: discovery leaves them alone."""
        ports: set[int] = set()
        for rec in self.urls.values():
            parts = urlsplit(rec.url)
            if parts.hostname in LOOPBACK:
                ports.add(parts.port or (443 if parts.scheme == "https" else 80))
        return ports

    async def discover(self) -> list[str]:
        """Probe the usual local serve endpoints, except the ports of apps already known; sync
        any that answers like an Inngest SDK."""
        assert self._session is not None
        skip = self._known_ports() | {self.config.port}
        ports = [p for p in DEV_DISCOVERY_PORTS if p not in skip]
        found: list[str] = []

        async def answers(url: str) -> bool:
            try:
                async with self._session.get(url, timeout=PROBE_TIMEOUT, allow_redirects=False) as resp:  # type: ignore[union-attr]
                    return bool(resp.headers.get(H.SDK))
            except (TimeoutError, aiohttp.ClientError, OSError):
                return False

        async def probe(port: int, path: str) -> None:
            # Both loopbacks, IPv4 first: dev servers of other stacks often listen on only one
            # of them (and "localhost" does not resolve to both on every machine).
            for host in ("127.0.0.1", "[::1]"):
                url = f"http://{host}:{port}{path}"
                if await answers(url):
                    found.append(url)
                    return

        await asyncio.gather(*(probe(port, path) for port in ports for path in DEV_DISCOVERY_PATHS))
        for url in found:
            norm = normalize_url(url)
            if norm not in self.urls:
                log.info("found an app at %s", url)
                await self.add(url, source="discovery")
        return found


def _describe_failure(status: int, text: str, url: str) -> str:
    detail = ""
    try:
        body = orjson.loads(text)
        if isinstance(body, dict):
            detail = str(body.get("message") or body.get("error") or "")
    except orjson.JSONDecodeError:
        detail = text[:300]
    kind = {401: "unauthorized", 403: "forbidden", 404: "url_not_found"}.get(
        status, "internal_server_error" if status >= 500 else "sync_failed"
    )
    msg = f"{kind}: the app at {url} answered HTTP {status}"
    return f"{msg}: {detail}" if detail else msg
