"""Realtime publish/subscribe inside one process (PROTOCOL.md §13).

A subscriber (one WebSocket or SSE connection) holds a set of topics — (environment, channel,
topic name) — and a bounded queue of frames. Publishing serializes a message once and appends
the frame to the queue of every subscriber of its topic, in the order publishes arrive, without
waiting for anyone: each connection's own writer drains its queue to its socket. So one slow
reader never holds up the publisher or the other readers. A reader that falls more than
``queue_messages`` frames (or ``queue_bytes``) behind is dropped: its queue is discarded and
its connection closed with ``CLOSE_TOO_SLOW`` and a reason that says so.

Nothing is stored: a subscriber gets what is published after it subscribed, and what was queued
for it is lost if it goes (at-most-once, as upstream). With several processes, ``relay`` sends
each published frame to the others (``relay.py``, Redis publish/subscribe).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger("pyngest.realtime")

MAX_MESSAGE_BYTES = 512 * 1024  # one published message (upstream's documented limit)
MAX_TOPICS = 100  # topics one subscription (one token) may name
MAX_SUBSCRIBERS = 10_000  # open subscriptions per process
MAX_NAME_CHARS = 1024  # a channel's or a topic's name
QUEUE_MESSAGES = 1_000  # frames waiting for one subscriber before it is dropped
QUEUE_BYTES = 16 * 1024 * 1024  # and their size

# WebSocket close codes (RFC 6455 §7.4, IANA registry)
CLOSE_TOO_SLOW = 1013  # "try again later": the subscriber fell too far behind and was dropped
CLOSE_SHUTDOWN = 1012  # "service restart": the server is stopping; reconnect (to another process)

TopicKey = tuple[str, str, str]  # (environment id, channel, topic name)


class HubFull(Exception):
    """No more subscribers are accepted on this process."""


class SubscriberClosed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Subscriber:
    """One connection's topics and its queue of frames not yet written."""

    def __init__(self, hub: RealtimeHub, protocol: str, max_messages: int, max_bytes: int) -> None:
        self.hub = hub
        self.protocol = protocol
        self.topics: set[TopicKey] = set()
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._wake = asyncio.Event()
        self.closed: SubscriberClosed | None = None
        self.delivered = 0
        # called when the subscriber is dropped (nothing more to write): its writer may be stuck
        # sending to a client that stopped reading, and is interrupted to close the connection
        self.on_drop: Callable[[], object] | None = None
        # set once its connection has nothing more to write: the writer met the end after the
        # last frame, or the connection's handler let it go
        self.ended = asyncio.Event()

    def push(self, frame: bytes) -> None:
        if self.closed is not None:
            return
        if len(self._frames) >= self._max_messages or self._bytes + len(frame) > self._max_bytes:
            self.hub.dropped_slow += 1
            log.warning("realtime: dropping a %s subscriber %d messages (%d bytes) behind", self.protocol,
                        len(self._frames), self._bytes)
            self.close(CLOSE_TOO_SLOW, f"realtime subscriber too slow: more than {self._max_messages} messages "
                                       f"or {self._max_bytes} bytes waiting; reconnect and read faster")
            return
        self._frames.append(frame)
        self._bytes += len(frame)
        self._wake.set()

    def close(self, code: int, reason: str, last: bytes | None = None) -> None:
        """Stop receiving; the writer gets ``last`` (if any), then SubscriberClosed."""
        if self.closed is not None:
            return
        self.closed = SubscriberClosed(code, reason)
        self._frames.clear()
        self._bytes = 0
        if last is not None:
            self._frames.append(last)
        self.hub.detach(self)
        self._wake.set()
        if last is None and self.on_drop is not None:
            self.on_drop()

    async def next(self, timeout_s: float | None) -> bytes | None:
        """The next frame; None if none came within ``timeout_s`` (time for a keepalive).
        Raises SubscriberClosed once closed and what was left for the writer is written."""
        while not self._frames:
            if self.closed is not None:
                self.ended.set()
                raise self.closed
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_s)
            except TimeoutError:
                return None
        frame = self._frames.popleft()
        if self.closed is None:
            self._bytes -= len(frame)
        self.delivered += 1
        return frame


class RealtimeHub:
    def __init__(self, *, max_subscribers: int = MAX_SUBSCRIBERS, queue_messages: int = QUEUE_MESSAGES,
                 queue_bytes: int = QUEUE_BYTES) -> None:
        self.max_subscribers = max_subscribers
        self.queue_messages = queue_messages
        self.queue_bytes = queue_bytes
        self.subscribers: set[Subscriber] = set()
        self._by_topic: dict[TopicKey, set[Subscriber]] = {}
        # scale-out: sends a published frame through Redis to every process, this one included
        # (None: this process only); answers whether Redis took it
        self.relay: Callable[[TopicKey, bytes], Awaitable[bool]] | None = None
        self.published = 0
        self.dropped_slow = 0
        self.closing = False

    def subscribe(self, protocol: str, topics: Iterable[TopicKey]) -> Subscriber:
        if self.closing:
            raise HubFull("the server is shutting down")
        if len(self.subscribers) >= self.max_subscribers:
            raise HubFull(f"this server process already has {self.max_subscribers} realtime subscribers")
        sub = Subscriber(self, protocol, self.queue_messages, self.queue_bytes)
        self.subscribers.add(sub)
        self.add_topics(sub, topics)
        return sub

    def add_topics(self, sub: Subscriber, topics: Iterable[TopicKey]) -> None:
        if sub.closed is not None:
            return
        for key in topics:
            sub.topics.add(key)
            self._by_topic.setdefault(key, set()).add(sub)

    def remove_topics(self, sub: Subscriber, topics: Iterable[TopicKey]) -> None:
        for key in topics:
            sub.topics.discard(key)
            subs = self._by_topic.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_topic[key]

    def detach(self, sub: Subscriber) -> None:
        """No more frames for ``sub``; its writer may still have the last ones to write."""
        self.remove_topics(sub, list(sub.topics))
        self.subscribers.discard(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        """The connection is gone: nothing of ``sub`` is left to write."""
        self.detach(sub)
        sub.ended.set()

    def deliver(self, key: TopicKey, frame: bytes) -> int:
        """Queue a frame for this process's subscribers of ``key``; how many got it."""
        subs = self._by_topic.get(key)
        if not subs:
            return 0
        for sub in list(subs):
            sub.push(frame)
        return len(subs)

    async def publish(self, key: TopicKey, frame: bytes) -> None:
        """Deliver to every subscriber of ``key``. Scale-out: through Redis, to this process
        too, returning once Redis took the frame: every process then receives the frames in
        Redis's one order, so two publishes one after the other (to any processes) reach every
        subscriber in that order. Without Redis (or when it fails), here directly."""
        self.published += 1
        if self.relay is not None and await self.relay(key, frame):
            return
        self.deliver(key, frame)

    def close(self, closing_frame: bytes) -> list[Subscriber]:
        """The server is stopping: every subscriber gets ``closing_frame``, then its connection
        ends. Returns the subscribers closed, for ``written``."""
        self.closing = True
        subs = list(self.subscribers)
        for sub in subs:
            sub.close(CLOSE_SHUTDOWN, "server shutting down; reconnect", last=closing_frame)
        return subs

    @staticmethod
    async def written(subs: Iterable[Subscriber], timeout_s: float) -> int:
        """Wait, at most ``timeout_s``, until each of ``subs`` has written what it had left (a
        reader that stopped reading is not waited for longer); how many did not."""
        waits = [asyncio.ensure_future(sub.ended.wait()) for sub in subs if not sub.ended.is_set()]
        if not waits:
            return 0
        _, pending = await asyncio.wait(waits, timeout=timeout_s)
        for wait in pending:
            wait.cancel()
        return len(pending)
