"""Realtime per environment (issue 15) on ``pyngest start``, with the official SDKs: a token
carries the environment of the key that asked for it (a branch with ``x-inngest-env``) and is
signed with that environment's key; publishes go to the publishing key's environment, or the
run's; a subscriber receives only its token's environment, so the same channel and topic in
production, a custom environment and a branch environment never cross — through Redis too,
across processes (PostgreSQL backend).

Subscribers: pyngest's ``subscribe`` helper (SSE), the official npm client (``inngest/realtime``,
WebSocket) and a plain WebSocket. Publishers: REST, the official Python SDK's
``inngest.experimental.realtime.publish`` (with ``env``), and functions of the npm SDK's app
(``step.realtime.publish``, ``inngest.realtime.publish``) synced into the custom environment.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import inngest
import pytest
import requests
import websockets
from inngest.experimental import realtime as official_realtime
from websockets.asyncio.client import connect as ws_connect

from pyngest.experimental import realtime
from pyngest.server.model import DEFAULT_ENV
from pyngest.server.realtime import tokens
from tests import backends

from .harness import Api, App, Server, hashed_signing_key, new_tag, poll
from .test_realtime import WAIT_S, Output, _node_subscriber, take, ws_url

pytestmark = pytest.mark.conformance

SIGNING_KEY = secrets.token_hex(32)
EVENT_KEY = f"evt-{secrets.token_hex(16)}"
BRANCH = "feature-rt"


def bearer(key: str, env: str | None = None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {hashed_signing_key(key)}"}
    if env:
        out["x-inngest-env"] = env
    return out


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    with Server.running(workdir / "server", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def staging(server: Server) -> dict[str, str]:
    """A custom environment with its signing key and an event key, and its branch's id."""
    res = requests.post(f"{server.url}/v1/envs", json={"name": "staging-rt"}, headers=bearer(SIGNING_KEY), timeout=10)
    assert res.status_code == 201, res.text
    env = res.json()["data"]
    key = env["signing_key"]
    res = requests.post(f"{server.url}/v1/keys/event", json={"name": "rt"}, headers=bearer(key), timeout=10)
    assert res.status_code == 201, res.text
    return {"id": env["id"], "key": key, "event_key": res.json()["data"]["key"]}


def get_token(server: Server, key: str, channel: str, topic: str = "t", env: str | None = None) -> str:
    res = requests.post(f"{server.url}/v1/realtime/token", headers=bearer(key, env), timeout=10,
                        json=[{"channel": channel, "name": topic, "kind": "run"}])
    assert res.status_code == 201, res.text
    return str(res.json()["jwt"])


def rest_publish(server: Server, key: str, channel: str, data: Any, env: str | None = None,
                 topic: str = "t", **params: str) -> None:
    res = requests.post(f"{server.url}/v1/realtime/publish", params={"channel": channel, "topic": topic, **params},
                        json=data, headers=bearer(key, env), timeout=10)
    assert res.status_code == 200, res.text


def branch_id(server: Server, staging: dict[str, str]) -> str:
    envs = requests.get(f"{server.url}/v1/envs", headers=bearer(staging["key"]), timeout=10).json()["data"]
    return next(e["id"] for e in envs if e["name"] == BRANCH and e["parent_id"] == staging["id"])


def test_tokens_carry_and_are_signed_for_their_environment(server: Server, staging: dict[str, str]) -> None:
    now = int(time.time())
    prod = tokens.verify(tokens.secrets_for([SIGNING_KEY]), get_token(server, SIGNING_KEY, "c"), now)
    stage_jwt = get_token(server, staging["key"], "c")
    stage = tokens.verify(tokens.secrets_for([staging["key"]]), stage_jwt, now)
    # a branch token: created on demand, signed with the parent's key it shares
    branch = tokens.verify(tokens.secrets_for([staging["key"]]), get_token(server, staging["key"], "c", env=BRANCH), now)
    assert (prod.env_id, stage.env_id, branch.env_id) == (DEFAULT_ENV, staging["id"], branch_id(server, staging))
    assert {t.env_id for t in branch.topics} == {branch.env_id}
    with pytest.raises(tokens.InvalidToken):  # production's key did not sign staging's token
        tokens.verify(tokens.secrets_for([SIGNING_KEY]), stage_jwt, now)
    # a token naming staging but signed with production's key subscribes to nothing
    forged = tokens.issue(tokens.secrets_for([SIGNING_KEY])[0], account_id=tokens.DEV_ACCOUNT_ID,
                          env_id=staging["id"], topics=[tokens.Topic("c", "t", staging["id"])], now_s=now)
    res = requests.get(f"{server.url}/v1/realtime/sse", params={"token": forged}, timeout=10)
    assert res.status_code == 401 and "signature" in res.json()["error"]
    # a staging token may not name a topic of production's
    crossing = tokens.issue(tokens.secrets_for([staging["key"]])[0], account_id=tokens.DEV_ACCOUNT_ID,
                            env_id=staging["id"], topics=[tokens.Topic("c", "t", DEFAULT_ENV)], now_s=now)
    res = requests.get(f"{server.url}/v1/realtime/sse", params={"token": crossing}, timeout=10)
    assert res.status_code == 401 and "another environment" in res.json()["error"]


async def test_the_same_channel_in_three_environments_never_crosses(server: Server, staging: dict[str, str]) -> None:
    channel = f"shared:{uuid.uuid4().hex}"
    key = staging["key"]
    # the official Python SDK, its client in the branch: its token and its publishes name the branch
    branch_client = inngest.Inngest(app_id="rt-branch", is_production=True, signing_key=key,
                                    api_base_url=server.url, env=BRANCH)
    branch_token = await official_realtime.get_subscription_token(branch_client, channel, ["t"])
    async with realtime.subscribe(token=get_token(server, SIGNING_KEY, channel), api_base_url=server.url) as prod, \
            realtime.subscribe(token=get_token(server, key, channel), api_base_url=server.url) as stage, \
            realtime.subscribe(token=branch_token, api_base_url=server.url) as branch, \
            ws_connect(ws_url(server, get_token(server, key, channel))) as raw_stage:
        for n in range(2):
            await asyncio.to_thread(rest_publish, server, SIGNING_KEY, channel, {"env": "prod", "n": n})
            await asyncio.to_thread(rest_publish, server, key, channel, {"env": "staging", "n": n})
            await official_realtime.publish(branch_client, channel, "t", {"env": "branch", "n": n})
        got = {name: [m.data for m in await take(stream, 2)]
               for name, stream in (("prod", prod), ("staging", stage), ("branch", branch))}
        frames = [json.loads(await asyncio.wait_for(raw_stage.recv(), WAIT_S)) for _ in range(2)]
    # in order, each its own environment's only: another's would have come before the second
    assert got == {env: [{"env": env, "n": 0}, {"env": env, "n": 1}] for env in ("prod", "staging", "branch")}
    assert [(f["env_id"], f["data"]["env"]) for f in frames] == [(staging["id"], "staging")] * 2


@pytest.fixture(scope="module")
def staging_apps(server: Server, staging: dict[str, str], workdir: Path) -> Iterator[dict[str, App]]:
    """The npm SDK's and the official Python SDK's apps, synced into staging with its key."""
    apps = {kind: App(kind, workdir, server.url, signing_key=staging["key"], event_key=staging["event_key"],
                      app_id=f"rt-{kind.replace('_', '-')}") for kind in ("js", "py_fastapi")}
    try:
        for app in apps.values():
            app.start()
            assert app.sync_error() is None
        yield apps
    finally:
        for app in apps.values():
            app.stop()


@pytest.mark.parametrize("kind", ["js", "py_fastapi"])
async def test_a_function_publishes_to_its_runs_environment(server: Server, staging: dict[str, str],
                                                            staging_apps: dict[str, App], kind: str) -> None:
    app = staging_apps[kind]
    channel = f"run:{uuid.uuid4().hex}"
    staging_api = Api(server.url, staging["event_key"], staging["key"])
    prod_token = get_token(server, SIGNING_KEY, channel, "progress")
    async with realtime.subscribe(token=get_token(server, staging["key"], channel, "progress"),
                                  api_base_url=server.url) as stage, \
            realtime.subscribe(token=prod_token, api_base_url=server.url) as prod:
        event_id = await asyncio.to_thread(staging_api.send, app.event("realtime-publish"),
                                           {"channel": channel, "count": 2, "tag": new_tag()})
        got = await take(stage, 2)
        run = await asyncio.to_thread(staging_api.wait_run, event_id)
        assert run["status"] == "Completed", run
        # production's key publishing with the staging run's id: the run's environment (the
        # default environment's key reaches every environment)
        await asyncio.to_thread(rest_publish, server, SIGNING_KEY, channel, {"i": 2}, topic="progress",
                                run_id=run["run_id"])
        got += await take(stage, 1)
        await asyncio.to_thread(rest_publish, server, SIGNING_KEY, channel, {"marker": True}, topic="progress")
        [first] = await take(prod, 1)
    assert [m.data["i"] for m in got] == [0, 1, 2]
    assert first.data == {"marker": True}  # production's subscriber got none of the run's messages


def test_the_npm_client_in_a_branch_gets_only_the_branch(server: Server, staging: dict[str, str]) -> None:
    channel = f"npm:{uuid.uuid4().hex}"
    proc = _node_subscriber(server, channel, 1, env={"INNGEST_SIGNING_KEY": staging["key"], "INNGEST_ENV": BRANCH})
    try:
        output = Output(proc)
        output.wait(lambda lines: "subscribed" in lines, 60)
        rest_publish(server, staging["key"], channel, {"where": "staging"}, topic="progress")
        rest_publish(server, SIGNING_KEY, channel, {"where": "production"}, topic="progress")
        rest_publish(server, staging["key"], channel, {"where": "branch"}, env=BRANCH, topic="progress")
        lines = output.wait(lambda lines: len(lines) >= 2, 90)
    finally:
        proc.kill()
        proc.wait()
    assert json.loads(lines[1])["data"] == {"where": "branch"}


async def test_fan_out_across_processes_keeps_the_environment(server: Server, staging: dict[str, str],
                                                              workdir: Path) -> None:
    if backends.BACKEND != "postgres":
        pytest.skip("processes share a database and Redis on the PostgreSQL backend")
    uri = backends.postgres_uri(backends.schema_for(server.workdir))
    with Server.running(workdir / "second", mode="start", signing_key=SIGNING_KEY, event_key=EVENT_KEY,
                        extra_args=["--postgres-uri", uri, "--redis-uri", backends.REDIS_URI]) as other:
        # the second process knows staging (the shared database) and its key
        poll(lambda: requests.post(f"{other.url}/v1/realtime/token", headers=bearer(staging["key"]), timeout=10,
                                   json=[{"channel": "c", "name": "t"}]).status_code == 201,
             what="the second process to know staging's key")
        channel = f"fanout:{uuid.uuid4().hex}"
        async with realtime.subscribe(token=get_token(other, staging["key"], channel), api_base_url=other.url) as stage, \
                realtime.subscribe(token=get_token(other, SIGNING_KEY, channel), api_base_url=other.url) as prod:
            # published on the first process, received through Redis on the second
            await asyncio.to_thread(rest_publish, server, staging["key"], channel, {"env": "staging"})
            await asyncio.to_thread(rest_publish, server, SIGNING_KEY, channel, {"env": "prod"})
            [s] = await take(stage, 1)
            [p] = await take(prod, 1)
    assert (s.data, p.data) == ({"env": "staging"}, {"env": "prod"})


def test_an_unknown_branch_or_environment_is_refused(
        server: Server, staging: dict[str, str]) -> None:
    res = requests.post(f"{server.url}/v1/realtime/publish", params={"channel": "c", "topic": "t"}, json={},
                        headers=bearer(staging["key"], "no-such-branch"), timeout=10)
    assert res.status_code == 404 and "no-such-branch" in res.json()["error"]
    # a token naming an environment this server does not have is refused
    nowhere = str(uuid.uuid4())
    ghost = tokens.issue(tokens.secrets_for([SIGNING_KEY])[0], account_id=tokens.DEV_ACCOUNT_ID,
                         env_id=nowhere, topics=[tokens.Topic("c", "t", nowhere)], now_s=int(time.time()))
    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(_connect(ws_url(server, ghost)))


async def _connect(url: str) -> None:
    async with ws_connect(url):
        pass
