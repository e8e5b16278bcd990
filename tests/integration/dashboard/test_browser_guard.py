"""Cross-site browser requests and DNS rebinding are refused in both modes (issue 13, row 6);
SDK-like callers (no Origin), curl and the dashboard itself (same origin) keep working."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pyngest.server.api.app import build_app
from tests.integration.dashboard.conftest import running
from tests.integration.server.harness import Harness

KEY = "signkey-test-" + "cd" * 32
EVIL = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
CREATE_APP = '{"query": "mutation { createApp(input: {url: \\"http://127.0.0.1:1/api/inngest\\"}) { url } }"}'


def client(h: Harness, base: str = "http://localhost:8288", **kw: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(h.service)), base_url=base,
                             **kw)  # type: ignore[arg-type]


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in running(tmp_path):
        yield h


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in running(tmp_path, mode="start", signing_key=KEY, event_keys=["ek"], dashboard_password="pw"):
        yield h


async def test_dev_refuses_cross_site_writes(dev: Harness) -> None:
    async with client(dev) as c:
        for path, body in (("/v1/apps", '{"url": "http://127.0.0.1:1/api/inngest"}'), ("/v0/gql", CREATE_APP),
                           ("/e/any", '{"name": "test/work"}'), ("/invoke/test-work", "{}"),
                           ("/v1/signals", '{"signal": "s", "data": {}}')):
            resp = await c.post(path, content=body, headers=EVIL)
            assert resp.status_code == 403, (path, resp.text)
            assert "cross-site request refused" in resp.json()["error"]
            fetch = await c.post(path, content=body, headers={"Sec-Fetch-Site": "same-site"})
            assert fetch.status_code == 403, path  # another port of localhost is the same site, not us
        assert (await c.get("/v1/apps")).status_code == 200
        assert len((await c.get("/v1/apps")).json()["data"]) == 1  # no app was added
        # the dashboard (same origin) and callers without an Origin (SDKs, curl) keep working
        same = await c.post("/v0/gql", json={"query": "{ apps { name } }"},
                            headers={"Origin": "http://localhost:8288", "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 200 and same.json()["data"]["apps"] == [{"name": "test"}]
        assert (await c.post("/e/any", json={"name": "test/work"})).status_code == 200


async def test_dev_refuses_rebound_host_names(dev: Harness) -> None:
    async with client(dev, base="http://attacker.example:8288") as c:
        resp = await c.get("/v1/apps")
        assert resp.status_code == 421 and "attacker.example" in resp.json()["error"]
    for base in ("http://localhost:8288", "http://127.0.0.1:8288", "http://[::1]:8288", "http://app.localhost"):
        async with client(dev, base=base) as c:
            assert (await c.get("/v1/apps")).status_code == 200, base


async def test_start_refuses_cross_site_writes_with_a_session(secured: Harness) -> None:
    async with client(secured) as anon:
        ok = await anon.post("/auth/login", data={"username": "admin", "password": "pw"})
        cookie = ok.cookies["pyngest_session"]
    async with client(secured, cookies={"pyngest_session": cookie}) as user:
        for path in ("/invoke/test-work", "/v1/signals", "/v0/gql"):
            resp = await user.post(path, content="{}", headers=EVIL)
            assert resp.status_code == 403, (path, resp.text)
        assert (await user.post("/invoke/test-work", json={"data": {}},
                                headers={"Origin": "http://localhost:8288"})).status_code == 200
    # start mode is reached by any name (it trusts keys and the session, not the network)
    async with client(secured, base="http://pyngest.internal") as c:
        assert (await c.post("/e/ek", json={"name": "test/work"})).status_code == 200


# ------------------------------------------------------------------ sign-in (issue 13, row 10)

@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in running(tmp_path, mode="start", signing_key=KEY, event_keys=["ek"], dashboard_password="pw",
                           trust_proxy=True):
        yield h


async def test_wrong_passwords_are_rate_limited_per_client_and_in_all(secured: Harness) -> None:
    async with client(secured) as c:
        for _ in range(10):
            wrong = await c.post("/auth/login", json={"username": "admin", "password": "guess"})
            assert wrong.status_code == 401
        locked = await c.post("/auth/login", json={"username": "admin", "password": "pw"})
        assert locked.status_code == 429 and "Too many wrong passwords" in locked.json()["error"]
        assert int(locked.headers["retry-after"]) > 0
        form = await c.post("/auth/login", data={"username": "admin", "password": "pw"})
        assert form.status_code == 429 and "Too many wrong passwords" in form.text


async def test_the_global_limit_holds_across_clients(proxied: Harness) -> None:
    async with client(proxied) as c:
        for i in range(100):  # each from another address (as the trusted proxy reports it)
            wrong = await c.post("/auth/login", json={"username": "admin", "password": "guess"},
                                 headers={"X-Forwarded-For": f"10.0.{i // 250}.{i % 250}"})
            assert wrong.status_code == 401
        fresh = await c.post("/auth/login", json={"username": "admin", "password": "pw"},
                             headers={"X-Forwarded-For": "10.9.9.9"})
        assert fresh.status_code == 429


async def test_logout_revokes_the_session(secured: Harness) -> None:
    async with client(secured) as anon:
        cookie = (await anon.post("/auth/login", data={"username": "admin", "password": "pw"})).cookies[
            "pyngest_session"]
    async with client(secured, cookies={"pyngest_session": cookie}) as user:
        assert (await user.get("/v1/apps")).status_code == 200
        assert (await user.post("/auth/logout")).status_code == 303
    async with client(secured, cookies={"pyngest_session": cookie}) as stolen:
        assert (await stolen.get("/v1/apps")).status_code == 401, "a signed-out session keeps working"


HTTPS = {"X-Forwarded-Proto": "https"}


async def test_an_untrusted_proxy_header_does_not_make_the_cookie_secure(secured: Harness) -> None:
    async with client(secured) as c:
        plain = await c.post("/auth/login", data={"username": "admin", "password": "pw"}, headers=HTTPS)
        assert "secure" not in plain.headers["set-cookie"].lower()  # not trusted: any client could say so


async def test_secure_cookie_behind_a_trusted_tls_proxy(proxied: Harness) -> None:
    async with client(proxied) as c:
        tls = await c.post("/auth/login", data={"username": "admin", "password": "pw"}, headers=HTTPS)
        assert "; secure" in tls.headers["set-cookie"].lower()
        bare = await c.post("/auth/login", data={"username": "admin", "password": "pw"})
        assert "secure" not in bare.headers["set-cookie"].lower()
