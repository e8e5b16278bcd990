"""Subscribe to a channel's topics over the server's SSE endpoint (``GET /v1/realtime/sse``).

    async with realtime.subscribe(client, channel="user:123", topics=["ai"]) as stream:
        # subscribed from here: what is published now on reaches the stream
        async for message in stream:
            print(message.topic, message.data)

With a client that has the signing key (or a dev server), ``subscribe`` gets its own token; with
a token from ``get_subscription_token`` (or its ``key`` string) it needs no key, only the
server's address (``api_base_url``, or the client's). The stream ends when the server ends it
(after 15 minutes, or when it stops: a ``closing`` message comes first); a subscriber dropped for
reading too slowly gets ``RealtimeError``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from pyngest.sdk import errors
from pyngest.sdk.client import Inngest

from .tokens import get_subscription_token

SSE_PATH = "/v1/realtime/sse"
# the server sends a keepalive every 15 s: a minute of silence means the connection is gone
READ_TIMEOUT_S = 60.0


class RealtimeError(errors.Error):
    """The server refused the subscription or ended it with an error."""


@dataclass(frozen=True)
class RealtimeMessage:
    kind: str  # "data", or "datastream-start" / "chunk" / "datastream-end" of a streamed publish, "closing"
    channel: str | None
    topic: str | None
    data: Any
    created_at: str | None = None
    run_id: str | None = None
    stream_id: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RealtimeMessage:
        return cls(kind=str(raw.get("kind")), channel=raw.get("channel"), topic=raw.get("topic"),
                   data=raw.get("data"), created_at=raw.get("created_at"), run_id=raw.get("run_id"),
                   stream_id=raw.get("stream_id"))


class Subscription:
    def __init__(self, *, client: Inngest | None, channel: str | None, topics: list[str] | None,
                 token: Mapping[str, object] | str | None, api_base_url: str | None) -> None:
        if token is None and (client is None or not channel or not topics):
            raise errors.Error("subscribe needs a client with channel= and topics=, or a token=")
        origin = api_base_url or (client.api_origin if client is not None else None)
        if not origin:
            raise errors.Error("subscribe needs the server's address: api_base_url= or a client")
        self._client = client
        self._channel = channel
        self._topics = topics
        self._token = token
        self._origin = origin
        self._http: httpx.AsyncClient | None = None
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None

    async def _key(self) -> str:
        token = self._token
        if token is None:
            assert self._client is not None and self._channel and self._topics
            token = await get_subscription_token(self._client, self._channel, self._topics)
        key = token if isinstance(token, str) else token.get("key")
        if not isinstance(key, str) or not key:
            raise errors.Error("the subscription token has no key")
        return key

    async def __aenter__(self) -> Subscription:
        key = await self._key()
        url = urllib.parse.urljoin(self._origin, SSE_PATH) + "?" + urllib.parse.urlencode({"token": key})
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S))
        request = self._http.build_request("GET", url, headers={"accept": "text/event-stream"})
        response = await self._http.send(request, stream=True)
        if response.status_code != 200:
            body = (await response.aread()).decode("utf-8", "replace")
            await self.aclose()
            raise RealtimeError(f"GET {SSE_PATH} answered HTTP {response.status_code}: {body[:500]}")
        self._response = response
        self._lines = response.aiter_lines()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()
            self._response = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def __aiter__(self) -> AsyncIterator[RealtimeMessage]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[RealtimeMessage]:
        if self._lines is None:
            raise errors.Error("enter the subscription first: async with subscribe(...) as stream")
        event, data = "", []
        async for line in self._lines:
            if line:
                if line.startswith(":"):
                    continue  # keepalive
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
                continue
            if data:
                payload = orjson.loads("\n".join(data))
                if event == "error":
                    raise RealtimeError(f"the server ended the subscription: {payload.get('reason')} "
                                        f"(code {payload.get('code')})")
                yield RealtimeMessage.from_json(payload)
            event, data = "", []


def subscribe(client: Inngest | None = None, *, channel: str | None = None, topics: list[str] | None = None,
              token: Mapping[str, object] | str | None = None, api_base_url: str | None = None) -> Subscription:
    """A subscription to ``topics`` of ``channel`` (or to what ``token`` grants); use it with
    ``async with``: it is subscribed once entered."""
    return Subscription(client=client, channel=channel, topics=topics, token=token, api_base_url=api_base_url)
