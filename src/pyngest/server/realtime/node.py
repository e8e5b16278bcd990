"""This process's realtime: the hub of its subscribers, the token secrets, and (scale-out with
Redis) the relay to the other processes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyngest.server.config import ServerConfig
from pyngest.server.realtime import frames
from pyngest.server.realtime.hub import RealtimeHub, Subscriber
from pyngest.server.realtime.relay import RedisRelay
from pyngest.server.realtime.tokens import DEV_ENV_ID, secrets_for

if TYPE_CHECKING:
    from pyngest.server.cluster.node import ClusterNode

log = logging.getLogger("pyngest.realtime")


class RealtimeNode:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.hub = RealtimeHub()
        self.secrets = secrets_for(config.signing_keys)
        self.relay: RedisRelay | None = None

    async def start(self, cluster: ClusterNode | None) -> None:
        if cluster is None:
            return
        if not self.config.redis_uri:
            log.warning("realtime: without --redis-uri, a message reaches only the subscribers connected to "
                        "the process it was published on")
            return
        self.relay = RedisRelay(self.config.redis_uri, cluster.store.cluster_id, cluster.node_id, self.hub)
        await self.relay.start()

    def close_subscribers(self, now_ms: int) -> list[Subscriber]:
        """The server is stopping: tell every subscriber (a ``closing`` message) and end them."""
        if self.hub.closing:
            return []
        return self.hub.close(frames.message("closing", env_id=DEV_ENV_ID, channel="", topic="", data=None,
                                             now_ms=now_ms))

    async def tell_subscribers(self, now_ms: int, timeout_s: float) -> None:
        """``close_subscribers``, returning once their ``closing`` messages are written (at most
        ``timeout_s``): the HTTP server ends open WebSockets as soon as it stops, and a client
        should learn why first."""
        late = await self.hub.written(self.close_subscribers(now_ms), timeout_s)
        if late:
            log.info("realtime: %d subscribers had not read the closing message after %.1f s", late, timeout_s)

    async def stop(self, now_ms: int) -> None:
        self.close_subscribers(now_ms)
        if self.relay is not None:
            await self.relay.stop()
