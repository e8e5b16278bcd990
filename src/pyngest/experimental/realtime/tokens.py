"""Subscription tokens: ``POST /v1/realtime/token`` with the signing key."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from pyngest.sdk import errors
from pyngest.sdk.client import Inngest

from . import _http

PATH = "/v1/realtime/token"


def _body(channel: str, topics: list[str]) -> list[dict[str, str]]:
    return [{"channel": channel, "name": topic, "kind": "run"} for topic in topics]


def _token(channel: str, topics: list[str], res: httpx.Response) -> Mapping[str, object]:
    jwt = res.json().get("jwt") if res.headers.get("content-type", "").startswith("application/json") else None
    if not isinstance(jwt, str):
        raise errors.Error(f"the server answered a token request without a token: {res.text[:300]}")
    # the shape the npm client's subscribe() takes, as the official SDK returns it
    return {"channel": channel, "topics": list(topics), "key": jwt}


async def get_subscription_token(client: Inngest, channel: str, topics: list[str]) -> Mapping[str, object]:
    """A token (valid for a minute) to subscribe to ``topics`` of ``channel``: hand it to a browser."""
    return _token(channel, topics, await _http.post(client, PATH, _body(channel, topics)))


def get_subscription_token_sync(client: Inngest, channel: str, topics: list[str]) -> Mapping[str, object]:
    return _token(channel, topics, _http.post_sync(client, PATH, _body(channel, topics)))
