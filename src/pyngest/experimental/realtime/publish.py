"""Publish a message to a channel's topic: ``POST /v1/realtime/publish``."""

from __future__ import annotations

from typing import Any

from pyngest.sdk.client import Inngest

from . import _http

PATH = "/v1/realtime/publish"


def _params(channel: str, topic: str, run_id: str | None) -> dict[str, str]:
    params = {"channel": channel, "topic": topic}
    if run_id:
        params["run_id"] = run_id
    return params


async def publish(client: Inngest, channel: str, topic: str, data: Any, *, run_id: str | None = None) -> None:
    """Send ``data`` (JSON-serializable) to the subscribers of ``topic`` in ``channel``.

    Delivery is at-most-once: subscribers connected now get it, nobody later. Raises
    ``pyngest.errors.Error`` if the server refused it (say, over 512 KB)."""
    await _http.post(client, PATH, data, _params(channel, topic, run_id))


def publish_sync(client: Inngest, channel: str, topic: str, data: Any, *, run_id: str | None = None) -> None:
    """``publish`` for synchronous code."""
    _http.post_sync(client, PATH, data, _params(channel, topic, run_id))
