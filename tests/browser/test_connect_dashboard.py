"""The apps page shows a connect app (docs/connect.md) with its live workers: instance id, SDK,
capacity, steps in flight, last heartbeat — with an official-SDK worker connected to a real
server, in Chromium."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ROOT, Page, Stack, _env

pytestmark = pytest.mark.browser

WORKER = ROOT / "tests" / "conformance" / "apps" / "py_connect.py"


def test_apps_page_lists_a_connect_app_and_its_workers(browser: Any, tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    env = {**_env(), "INNGEST_DEV": stack.base, "INNGEST_BASE_URL": stack.base,
           "CONFORMANCE_APP_ID": "dash-connect", "CONFORMANCE_PREFIX": "dash-connect",
           "CONNECT_INSTANCE_ID": "dash-worker-1", "CONNECT_MAX_CONCURRENCY": "4", "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen([sys.executable, str(WORKER)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "worker.log", "w"))  # noqa: SIM115
    page = Page(browser, stack.base)
    try:
        deadline = time.monotonic() + 60
        while not httpx.get(f"{stack.base}/v0/connect/envs/dev/conns").json()["data"]:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker did not connect"
            time.sleep(0.1)
        p = page.go("/apps")
        card = p.locator('article[data-app="dash-connect"]')
        card.wait_for()
        assert "Connect" in card.locator(".panel-head").inner_text()
        assert card.locator("dt:has-text('Workers') + dd").inner_text() == "1 connected"
        row = card.locator('tr[data-instance="dash-worker-1"]')
        row.wait_for()
        cells = [c.inner_text() for c in row.locator("td").all()]
        assert cells[0] == "dash-worker-1" and cells[1] == "py 0.5.19" and cells[2] == "4" and cells[3] == "0", cells
        assert cells[4] in ("just now",) or cells[4].endswith("s ago"), cells
        assert card.locator("button:has-text('Resync')").count() == 0  # its workers sync it
        page.shot("apps-connect")
        # the worker goes: the card says so within the page's 5 s refresh
        worker.terminate()
        worker.wait(30)
        card.locator('p[data-workers="0"]').wait_for(timeout=15_000)
        assert page.errors == [], page.errors
    finally:
        if worker.poll() is None:
            worker.kill()
        page.ctx.close()
        stack.stop()


def test_the_worker_list_follows_the_selected_environment(browser: Any, tmp_path: Path) -> None:
    """Start mode: one app id with a worker in production and one in a branch (INNGEST_ENV); the
    apps page lists production's worker, and after switching to the branch the branch's."""
    stack = Stack(tmp_path, start_mode=True)
    admin = {"Authorization": f"Bearer {stack.signing_key}"}
    workers = []
    for name, branch in (("dash-prod", None), ("dash-preview", "dash-preview")):
        env = {**_env(), "INNGEST_DEV": "0", "INNGEST_BASE_URL": stack.base, "INNGEST_SIGNING_KEY": stack.signing_key,
               "CONFORMANCE_APP_ID": "dash-env", "CONFORMANCE_PREFIX": "dash-env", "CONNECT_INSTANCE_ID": name,
               "PYTHONUNBUFFERED": "1", **({"INNGEST_ENV": branch} if branch else {})}
        workers.append(subprocess.Popen([sys.executable, str(WORKER)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                        stderr=open(tmp_path / f"{name}.log", "w")))  # noqa: SIM115
    page = Page(browser, stack.base)
    try:
        deadline = time.monotonic() + 60
        for env_name in ("Production", "dash-preview"):
            while not (httpx.get(f"{stack.base}/v0/connect/envs/{env_name}/conns", headers=admin).json()
                       .get("data")):
                assert all(w.poll() is None for w in workers), (tmp_path / "dash-preview.log").read_text()
                assert time.monotonic() < deadline, f"no worker connected in {env_name}"
                time.sleep(0.1)
        p = page.go("/apps")
        p.fill("input[name=password]", "correct horse")
        p.click("button:has-text('Sign in')")
        card = p.locator('article[data-app="dash-env"]')
        card.locator('tr[data-instance="dash-prod"]').wait_for()
        assert card.locator("tr[data-instance]").count() == 1
        branch = next(e for e in httpx.get(f"{stack.base}/v1/envs", headers=admin).json()["data"]
                      if e["name"] == "dash-preview")
        with p.expect_navigation():  # switching reloads the page
            p.select_option("select[aria-label=Environment]", branch["id"])
        card = p.locator('article[data-app="dash-env"]')
        card.locator('tr[data-instance="dash-preview"]').wait_for()
        assert card.locator("tr[data-instance]").count() == 1
        assert page.errors == [], page.errors
    finally:
        for w in workers:
            w.kill()
        page.ctx.close()
        stack.stop()
