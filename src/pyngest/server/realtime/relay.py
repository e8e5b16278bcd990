"""Realtime messages between the processes of a cluster, through Redis publish/subscribe.

Every process subscribes to one Redis channel of the cluster (``pyngest:<cluster>:realtime``)
and hands what arrives there to its own subscribers. Publishes go to Redis from one task per
process, in order, pipelining what queued up meanwhile, and are delivered — on this process
too — when they come back: every process sees all frames in Redis's single order, so two
publishes one after the other, even to two different processes, reach every subscriber in that
order. A publish call returns once Redis took its frame. While Redis is unreachable, a process
delivers what is published to it to its own subscribers only.

Like upstream, this is not durable: a process that is not connected to Redis at the moment of a
publish (Redis down, restarting) does not receive it, and its subscribers miss it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson

from pyngest.server.realtime.hub import RealtimeHub, TopicKey
from pyngest.server.tasks import stop_tasks

log = logging.getLogger("pyngest.realtime")

_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_PIPELINE = 256  # frames sent to Redis in one round trip at most


class RedisRelay:
    def __init__(self, url: str, cluster_id: str, node_id: str, hub: RealtimeHub) -> None:
        self.url = url
        self.channel = f"pyngest:{cluster_id}:realtime"
        self.node_id = node_id
        self.hub = hub
        self.connected = asyncio.Event()
        self.send_failures = 0
        self._client: Any = None
        self._outbox: asyncio.Queue[tuple[bytes, asyncio.Future[bool]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5,
                                            health_check_interval=10)
        self._tasks = [asyncio.create_task(self._listen(), name="pyngest-realtime-listen"),
                       asyncio.create_task(self._send_loop(), name="pyngest-realtime-send")]
        self.hub.relay = self.send

    async def stop(self) -> None:
        self.hub.relay = None
        await stop_tasks(self._tasks)
        while not self._outbox.empty():
            _, fut = self._outbox.get_nowait()
            if not fut.done():
                fut.set_result(False)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def send(self, key: TopicKey, frame: bytes) -> bool:
        """Whether Redis took the frame (False: not connected, or it failed)."""
        if not self.connected.is_set():
            return False
        header = orjson.dumps([self.node_id, *key])
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((header + b"\n" + frame, fut))
        return await fut

    async def _send_loop(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < _PIPELINE and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                pipe = self._client.pipeline(transaction=False)
                for payload, _ in batch:
                    pipe.publish(self.channel, payload)
                await pipe.execute()
                sent = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # at-most-once: subscribers on other processes miss these
                self.send_failures += len(batch)
                sent = False
                log.warning("realtime: %d message(s) not sent through redis (%s): only this process's "
                            "subscribers get them", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(sent)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # the confirmation arrives before anything published after it
                while await pubsub.get_message(timeout=1.0) is None:
                    pass
                self.connected.set()
                attempt = 0
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        self._deliver(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning("realtime: redis lost (%s); subscribers here miss other processes' messages "
                                "until it is back", exc)
                self.connected.clear()
                await asyncio.sleep(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
                attempt += 1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _deliver(self, payload: bytes) -> None:
        header, _, frame = payload.partition(b"\n")
        try:
            _node, env, channel, topic = orjson.loads(header)
        except (orjson.JSONDecodeError, ValueError):
            log.warning("realtime: ignoring a malformed message on %s", self.channel)
            return
        self.hub.deliver((env, channel, topic), frame)  # this process's own publishes too
