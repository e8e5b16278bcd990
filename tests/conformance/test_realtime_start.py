"""Realtime on ``pyngest start`` (a signing key): tokens are signed with the signing key and
need it to be issued, publishing needs the key (or a token that may publish), a token signed
with anything else — upstream's dev secret included — subscribes to nothing, and functions of
apps in cloud mode publish with their signed requests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import requests
import websockets
from websockets.asyncio.client import connect as ws_connect

import pyngest
from pyngest.experimental import realtime
from pyngest.server.realtime import tokens

from .harness import Api, App, Server, hashed_signing_key, new_tag
from .test_realtime import Output, _node_subscriber, take, ws_url
from .test_signing import KEY_SPELLING, SIGNING_KEY, app, server, signed_apps  # noqa: F401 (fixtures)

pytestmark = pytest.mark.conformance

BEARER = {"Authorization": f"Bearer {hashed_signing_key(SIGNING_KEY)}"}
TOPIC = [{"channel": "c", "name": "t", "kind": "run"}]


def _token(srv: Server, channel: str) -> str:
    res = requests.post(f"{srv.url}/v1/realtime/token", headers=BEARER, timeout=10,
                        json=[{"channel": channel, "name": "progress", "kind": "run"}])
    assert res.status_code == 201, res.text
    return str(res.json()["jwt"])


def test_tokens_need_the_signing_key_and_are_signed_with_it(server: Server) -> None:  # noqa: F811
    url = f"{server.url}/v1/realtime/token"
    assert requests.post(url, json=TOPIC, timeout=10).status_code == 401
    assert requests.post(url, json=TOPIC, headers={"Authorization": "Bearer " + "0" * 64},
                         timeout=10).status_code == 401
    for spelling in (hashed_signing_key(SIGNING_KEY), f"signkey-prod-{hashed_signing_key(SIGNING_KEY)}"):
        res = requests.post(url, json=TOPIC, headers={"Authorization": f"Bearer {spelling}"}, timeout=10)
        assert res.status_code == 201, res.text
        jwt = res.json()["jwt"]
        assert tokens.verify(tokens.secrets_for([SIGNING_KEY]), jwt, int(time.time())).topics
        with pytest.raises(tokens.InvalidToken):
            tokens.verify([tokens.DEV_SECRET], jwt, int(time.time()))


async def test_a_token_not_signed_with_the_key_subscribes_to_nothing(server: Server) -> None:  # noqa: F811
    dev = tokens.issue(tokens.DEV_SECRET, account_id=tokens.DEV_ACCOUNT_ID, env_id=tokens.DEV_ENV_ID,
                       topics=[tokens.Topic("c", "t")], now_s=int(time.time()))
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with ws_connect(ws_url(server, dev)):
            pass
    assert refused.value.response.status_code == 401
    res = requests.get(f"{server.url}/v1/realtime/sse", params={"token": dev}, timeout=10)
    assert res.status_code == 401 and "signature" in res.json()["error"]


async def test_publishing_needs_the_key_or_a_publish_token(server: Server) -> None:  # noqa: F811
    channel = f"c:{uuid.uuid4().hex}"
    url = f"{server.url}/v1/realtime/publish"
    params = {"channel": channel, "topic": "progress"}
    secret = tokens.secrets_for([SIGNING_KEY])[0]
    subscription = _token(server, channel)
    may_publish = tokens.issue(secret, account_id=tokens.DEV_ACCOUNT_ID, env_id=tokens.DEV_ENV_ID, topics=[],
                               now_s=int(time.time()), publish=True)
    async with realtime.subscribe(token=subscription, api_base_url=server.url) as stream:
        assert requests.post(url, params=params, json={"n": 0}, timeout=10).status_code == 401
        refused = requests.post(url, params=params, json={"n": 0}, timeout=10,
                                headers={"Authorization": f"Bearer {subscription}"})
        assert refused.status_code == 401  # a subscription token may not publish
        for n, headers in enumerate([BEARER, {"Authorization": f"Bearer {may_publish}"}], start=1):
            res = requests.post(url, params=params, json={"n": n}, headers=headers, timeout=10)
            assert res.status_code == 200, res.text
        got = await take(stream, 2)
    assert [m.data["n"] for m in got] == [1, 2]


@pytest.mark.parametrize("app", ["py_fastapi", "pyngest_fastapi", "js"], indirect=True)
async def test_cloud_mode_functions_publish_to_a_keyed_subscriber(server: Server, app: App) -> None:  # noqa: F811
    channel = f"run:{uuid.uuid4().hex}"
    client = pyngest.Inngest(app_id="realtime-test", is_production=True, api_base_url=server.url,
                             signing_key=f"signkey-prod-{SIGNING_KEY}")
    api = server.api()
    async with realtime.subscribe(client, channel=channel, topics=["progress"]) as stream:
        event_id = await asyncio.to_thread(api.send, app.event("realtime-publish"),
                                           {"channel": channel, "count": 3, "tag": new_tag()})
        got = await take(stream, 3)
    run = await asyncio.to_thread(api.wait_run, event_id)
    assert run["status"] == "Completed", run
    assert [m.data["i"] for m in got] == [0, 1, 2]


@pytest.mark.parametrize("app", ["js"], indirect=True)
def test_npm_client_gets_a_token_with_the_key_and_subscribes(server: Server, app: App) -> None:  # noqa: F811
    channel = f"user:{uuid.uuid4().hex}"
    proc = _node_subscriber(server, channel, 2, env={"INNGEST_SIGNING_KEY": KEY_SPELLING["js"]})
    try:
        output = Output(proc)
        output.wait(lambda lines: "subscribed" in lines, 60)
        api: Api = server.api()
        api.send(app.event("realtime-publish"), {"channel": channel, "count": 2, "tag": new_tag()})
        lines = output.wait(lambda lines: len(lines) >= 3, 90)
    finally:
        proc.kill()
        proc.wait()
    assert [json.loads(line)["data"]["i"] for line in lines[1:3]] == [0, 1]
