"""What subscribers receive: upstream's ``streamingtypes.Message`` and ``Chunk`` as JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def created_at(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, as Go writes a ``time.Time`` truncated to them."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(kind: str, *, env_id: str, channel: str, topic: str, data: Any, now_ms: int,
            run_id: str | None = None, metadata: Any = None) -> bytes:
    """One message (``data``, ``datastream-start``/``-end``, ``closing``) as a frame."""
    body: dict[str, Any] = {"kind": kind, "data": data}
    if metadata is not None:
        body["metadata"] = metadata
    body["created_at"] = created_at(now_ms)
    if channel:
        body["channel"] = channel
    body["env_id"] = env_id
    body["topic"] = topic
    if run_id:
        body["run_id"] = run_id
    return orjson.dumps(body)


def chunk(*, stream_id: str, data: str, channel: str, topic: str, run_id: str | None = None) -> bytes:
    """A piece of a streamed publish. Upstream's chunk has no channel or topic, without which
    the npm client ignores it; here it carries both."""
    body: dict[str, Any] = {"kind": "chunk", "stream_id": stream_id, "data": data, "channel": channel, "topic": topic}
    if run_id:
        body["run_id"] = run_id
    return orjson.dumps(body)
