"""The two REST calls realtime makes, with the client's signing key (and its fallback)."""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import orjson

from pyngest.sdk import config, errors
from pyngest.sdk.client import Inngest


def _request(client: Inngest, path: str, params: dict[str, str] | None, body: Any) -> tuple[str, dict[str, str], bytes]:
    url = urllib.parse.urljoin(client.api_origin, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        content = orjson.dumps(body)
    except TypeError as exc:
        raise errors.Error(f"realtime data must be JSON-serializable: {exc}") from exc
    return url, config.base_headers(env=client.env, framework=None, server_kind=None), content


def _keys(client: Inngest) -> list[str | None]:
    fallback = client.signing_key_fallback
    return [client.signing_key, *([fallback] if fallback else [])]


def _checked(url: str, res: httpx.Response) -> httpx.Response:
    if res.status_code >= 400:
        raise errors.Error(f"POST {url} answered HTTP {res.status_code}: {res.text[:500]}")
    return res


async def post(client: Inngest, path: str, body: Any, params: dict[str, str] | None = None) -> httpx.Response:
    url, headers, content = _request(client, path, params, body)
    http = client._http_async()
    res: httpx.Response | None = None
    for key in _keys(client):
        res = await http.post(url, content=content, headers={**headers, **client._auth_headers(key)})
        if res.status_code not in (401, 403):
            break
    assert res is not None
    return _checked(url, res)


def post_sync(client: Inngest, path: str, body: Any, params: dict[str, str] | None = None) -> httpx.Response:
    url, headers, content = _request(client, path, params, body)
    http = client._http_sync()
    res: httpx.Response | None = None
    for key in _keys(client):
        res = http.post(url, content=content, headers={**headers, **client._auth_headers(key)})
        if res.status_code not in (401, 403):
            break
    assert res is not None
    return _checked(url, res)
