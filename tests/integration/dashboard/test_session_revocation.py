"""Signing out of the dashboard holds for good: after a restart, and on every process of a
cluster (the revoked session is in the store, not only in the memory of the process)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.integration.cluster.harness import Cluster
from tests.integration.dashboard.conftest import running
from tests.integration.dashboard.test_auth_metrics_live import KEY, client

SECURED = {"mode": "start", "signing_key": KEY, "event_keys": ["ek"], "dashboard_password": "s3cret"}
QUERY = {"query": "{ apps { name } }"}


async def _sign_in(http: httpx.AsyncClient) -> str:
    ok = await http.post("/auth/login", data={"username": "admin", "password": "s3cret", "next": "/"})
    assert ok.status_code == 303, ok.text
    return str(ok.cookies["pyngest_session"])


async def test_a_signed_out_session_stays_refused_after_a_restart(tmp_path: Path) -> None:
    async for h in running(tmp_path, **SECURED):
        async with client(h) as anon:
            cookie = await _sign_in(anon)
            other = await _sign_in(anon)  # a second session, never signed out
        async with client(h, cookies={"pyngest_session": cookie}) as user:
            assert (await user.post("/v0/gql", json=QUERY)).status_code == 200
            assert (await user.post("/auth/logout")).status_code == 303
        async with client(h, cookies={"pyngest_session": cookie}) as copied:
            assert (await copied.post("/v0/gql", json=QUERY)).status_code == 401

    # the same data directory (or PostgreSQL schema), a new process's worth of memory
    async for h in running(tmp_path, **SECURED):
        async with client(h, cookies={"pyngest_session": cookie}) as copied:
            assert (await copied.post("/v0/gql", json=QUERY)).status_code == 401
            page = await copied.get("/runs")
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
            assert (await copied.get("/auth/status")).json()["authenticated"] is False
        async with client(h, cookies={"pyngest_session": other}) as kept:
            assert (await kept.post("/v0/gql", json=QUERY)).status_code == 200


@pytest.mark.skipif(backends.BACKEND != "postgres", reason="several processes share PostgreSQL only")
async def test_signing_out_on_one_process_refuses_the_cookie_on_another(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, nodes=2, **SECURED)
    await cluster.start()
    try:
        one, two = cluster.nodes
        cookie = await _sign_in(one.http)  # the same keys: a cookie of one process works on the other
        one.http.cookies.clear()
        headers = {"Cookie": f"pyngest_session={cookie}"}
        for node in (one, two):
            resp = await node.http.post("/v0/gql", json=QUERY, headers=headers)
            assert resp.status_code == 200, resp.text
        assert (await one.http.post("/auth/logout", headers=headers)).status_code == 303
        for node in (two, one):
            resp = await node.http.post("/v0/gql", json=QUERY, headers=headers)
            assert resp.status_code == 401, resp.text
    finally:
        await cluster.stop()
