"""Wake-ups between the processes of a cluster, through Redis publish/subscribe.

Nothing here is needed for correctness: PostgreSQL is the record, and every process also polls
it. A message only makes another process look *now* instead of at its next poll: new events in
the log, a job enqueued for a shard it owns, a changed registry, the dashboard's live feed. With
Redis gone (down, flushed, replaced by an empty one), processes carry on at polling latency and
pick up messages again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.cluster")

TOPICS = ("events", "jobs", "registry", "live", "nodes")
_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class Notifier:
    """Publish small JSON messages on a topic; call the handlers of each received one."""

    def __init__(self, url: str | None, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.handlers: dict[str, list[Callable[[Any], None]]] = {t: [] for t in TOPICS}
        self.connected = False
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[str, Any] = {}  # topic -> latest message not yet published
        self._publishing: set[str] = set()
        self._closed = False

    def channel(self, topic: str) -> str:
        return f"pyngest:{self.prefix}:{topic}"

    def on(self, topic: str, handler: Callable[[Any], None]) -> None:
        self.handlers[topic].append(handler)

    async def start(self) -> None:
        if self.url is None:
            return
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5,
                                            health_check_interval=10)
        self._task = asyncio.create_task(self._listen(), name="pyngest-notify")

    async def stop(self) -> None:
        self._closed = True
        await stop_tasks([self._task])
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    def publish(self, topic: str, message: Any) -> None:
        """Send ``message`` soon; a newer message for a topic still waiting replaces the older
        when both would say the same thing (callers merge what matters, e.g. shard lists)."""
        if self._client is None or self._closed:
            return
        if topic in self._publishing:
            self._pending[topic] = _merge(self._pending.get(topic), message)
            return
        self._publishing.add(topic)
        asyncio.get_running_loop().create_task(self._send(topic, message))

    async def _send(self, topic: str, message: Any) -> None:
        try:
            while True:
                if self.connected:
                    try:
                        await self._client.publish(self.channel(topic), orjson.dumps(message))
                    except Exception as exc:  # the listener notices and reconnects
                        log.debug("publish on %s failed: %s", topic, exc)
                if topic not in self._pending:
                    return
                message = self._pending.pop(topic)
        finally:
            self._publishing.discard(topic)

    async def _listen(self) -> None:
        attempt = 0
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*(self.channel(t) for t in TOPICS))
                if not self.connected:
                    log.info("redis: connected, subscribed to the cluster's wake-ups")
                self.connected = True
                attempt = 0
                self._deliver("nodes", {"reconnected": True})
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    topic = msg["channel"].decode().rsplit(":", 1)[-1]
                    self._deliver(topic, orjson.loads(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    log.warning("redis: lost (%s); processes keep working by polling PostgreSQL", exc)
                self.connected = False
                await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
                attempt += 1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _deliver(self, topic: str, message: Any) -> None:
        for handler in self.handlers.get(topic, ()):
            try:
                handler(message)
            except Exception:
                log.exception("handling a %s message failed", topic)


def _merge(old: Any, new: Any) -> Any:
    """Two pending messages of a topic as one: shard lists are united, the rest keeps the newer."""
    if isinstance(old, dict) and isinstance(new, dict) and "shards" in old and "shards" in new:
        return {**new, "shards": sorted(set(old["shards"]) | set(new["shards"]))}
    return new
