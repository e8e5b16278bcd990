"""A real pyngest server (``pyngest dev``) and a real app (the official Inngest Python SDK, see
``shop_app.py``), driven by Debian's Chromium through Playwright.

Screenshots go to a temporary directory, so a test run rewrites no tracked file; the README's
and docs' screenshots in ``docs/screenshots/`` are taken again with ``scripts/screenshots``
(which sets ``PYNGEST_SCREENSHOTS`` to that directory)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends

ROOT = Path(__file__).resolve().parents[2]
# where `Page.shot` writes: the directory PYNGEST_SCREENSHOTS names, else a temporary one
SHOTS = Path(os.environ.get("PYNGEST_SCREENSHOTS") or tempfile.mkdtemp(prefix="pyngest-screenshots-"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not come up in {timeout}s")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}


class Stack:
    """``pyngest`` and the shop app as subprocesses."""

    def __init__(self, tmp: Path, *, start_mode: bool = False) -> None:
        self.port = free_port()
        self.app_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.app_url = f"http://127.0.0.1:{self.app_port}/api/inngest"
        args = [sys.executable, "-m", "pyngest.server.cli"]
        server_env = _env()
        self.signing_key = "signkey-test-" + "cd" * 32
        if start_mode:
            args += ["start", "--signing-key", self.signing_key, "--event-key", "ek"]
            server_env["INNGEST_DASHBOARD_PASSWORD"] = "correct horse"  # the variable, not the flag
        else:
            args += ["dev", "--no-discovery", "--no-poll"]
        args += ["-p", str(self.port), "--sqlite-dir", str(tmp / "db"), "--retry-interval", "1"]
        if backends.BACKEND == "postgres":
            schema = backends.schema_for(tmp)
            backends.create_schema_sync(schema)
            args += ["--postgres-uri", backends.postgres_uri(schema), "--redis-uri", backends.REDIS_URI]
        self.procs = [subprocess.Popen(args, cwd=tmp, env=server_env, stdout=subprocess.DEVNULL,
                                       stderr=open(tmp / "server.log", "w"))]  # noqa: SIM115
        if not start_mode:
            env = {**_env(), "PYNGEST_URL": self.base, "INNGEST_DEV": "1"}
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "tests.browser.shop_app:app", "--port", str(self.app_port),
                 "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                stderr=open(tmp / "app.log", "w")))  # noqa: SIM115
        wait_for(f"{self.base}/health")
        self.billing_url = self.app_url.replace("/api/inngest", "/api/billing")
        if not start_mode:
            wait_for(self.app_url)
            for url in (self.app_url, self.billing_url):
                resp = httpx.post(f"{self.base}/v1/apps", json={"url": url}, timeout=20)
                assert resp.status_code == 200, resp.text

    def send(self, name: str, data: dict[str, Any] | None = None, key: str = "test") -> str:
        resp = httpx.post(f"{self.base}/e/{key}", json={"name": name, "data": data or {}})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["ids"][0])

    def runs(self, event_id: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.base}/v1/events/{event_id}/runs").json()["data"])

    def wait_runs(self, event_id: str, *, ended: bool = True, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(event_id)
            done = all(r["status"] not in ("Queued", "Running") for r in runs)
            if len(runs) >= count and (done or not ended):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"runs of {event_id}: {runs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def browser() -> Iterator[Any]:
    # Per test: sync Playwright marks the thread's event loop as running while it is open,
    # which the asyncio tests sharing this worker process must not see.
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield s
    finally:
        s.stop()


class Page:
    """A Playwright page that records console errors and failed requests; tests assert none."""

    def __init__(self, browser: Any, base: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="UTC",
                                       locale="en-US")
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(10_000)
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: d.accept())

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def watch(self, selector: str) -> None:
        """Note, in the page and on the wall clock, when ``selector`` first matches (a poll
        every 5 ms, so the figure is the page's, not Playwright's round trips)."""
        self.page.evaluate("""sel => { window.__seen = window.__seen || {};
          const t = setInterval(() => { if (document.querySelector(sel)) {
            window.__seen[sel] = Date.now(); clearInterval(t); } }, 5); }""", selector)

    def seen_after(self, selector: str, since: float, timeout: float = 10_000) -> float:
        """Seconds from ``since`` (``time.time()``) until ``selector`` matched (see :meth:`watch`)."""
        self.page.wait_for_function("sel => window.__seen && sel in window.__seen", arg=selector, timeout=timeout)
        return float(self.page.evaluate("sel => window.__seen[sel]", selector)) / 1000 - since

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(250)  # let the last re-render and chart settle
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Page]:
    p = Page(browser, stack.base)
    yield p
    errors = list(p.errors)
    p.ctx.close()
    assert errors == [], errors
