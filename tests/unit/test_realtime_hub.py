"""The realtime hub: per-subscriber order, topic routing, bounded queues that drop a slow
subscriber (and only it), limits, and shutdown."""

from __future__ import annotations

import asyncio

import pytest

from pyngest.server.realtime.hub import (
    CLOSE_SHUTDOWN,
    CLOSE_TOO_SLOW,
    HubFull,
    RealtimeHub,
    Subscriber,
    SubscriberClosed,
)

A = ("env", "chan", "a")
B = ("env", "chan", "b")


async def drain(sub: Subscriber) -> list[bytes]:
    out = []
    while (frame := await sub.next(0)) is not None:
        out.append(frame)
    return out


async def test_each_subscriber_gets_its_topics_in_publish_order() -> None:
    hub = RealtimeHub()
    both = hub.subscribe("ws", [A, B])
    only_b = hub.subscribe("sse", [B])
    for n in range(50):
        await hub.publish(A if n % 3 else B, str(n).encode())
    assert await drain(both) == [str(n).encode() for n in range(50)]
    assert await drain(only_b) == [str(n).encode() for n in range(50) if n % 3 == 0]
    assert hub.published == 50


async def test_subscribers_get_only_what_is_published_after_they_subscribe() -> None:
    hub = RealtimeHub()
    await hub.publish(A, b"early")
    sub = hub.subscribe("ws", [A])
    await hub.publish(A, b"late")
    assert await drain(sub) == [b"late"]


async def test_a_slow_subscriber_is_dropped_without_holding_up_others() -> None:
    hub = RealtimeHub(queue_messages=10)
    slow = hub.subscribe("ws", [A])
    fast = hub.subscribe("ws", [A])
    got: list[bytes] = []
    for n in range(25):
        await hub.publish(A, str(n).encode())  # never waits for a reader
        got += await drain(fast)
    assert got == [str(n).encode() for n in range(25)]
    with pytest.raises(SubscriberClosed) as closed:
        await slow.next(0)
    assert closed.value.code == CLOSE_TOO_SLOW and "too slow" in closed.value.reason
    assert slow not in hub.subscribers and hub.dropped_slow == 1
    await hub.publish(A, b"after")
    assert await drain(fast) == [b"after"]


async def test_the_queue_is_bounded_in_bytes_too() -> None:
    hub = RealtimeHub(queue_bytes=1000)
    sub = hub.subscribe("sse", [A])
    await hub.publish(A, b"x" * 600)
    await hub.publish(A, b"y" * 600)
    assert sub.closed is not None and sub.closed.code == CLOSE_TOO_SLOW


async def test_a_waiting_writer_wakes_for_a_frame_and_times_out_for_keepalives() -> None:
    hub = RealtimeHub()
    sub = hub.subscribe("ws", [A])
    assert await sub.next(0.01) is None  # time for a keepalive
    waiter = asyncio.create_task(sub.next(None))
    await asyncio.sleep(0)
    await hub.publish(A, b"1")
    assert await asyncio.wait_for(waiter, 1) == b"1"


async def test_limits_and_unsubscribing() -> None:
    hub = RealtimeHub(max_subscribers=2)
    one = hub.subscribe("ws", [A])
    two = hub.subscribe("ws", [A, B])
    with pytest.raises(HubFull, match="2 realtime subscribers"):
        hub.subscribe("ws", [A])
    hub.unsubscribe(one)
    three = hub.subscribe("ws", [B])
    hub.remove_topics(two, [A])
    await hub.publish(A, b"a")
    await hub.publish(B, b"b")
    assert await drain(two) == [b"b"] and await drain(three) == [b"b"] and await drain(one) == []


async def test_shutdown_sends_the_closing_frame_then_ends_every_subscription() -> None:
    hub = RealtimeHub()
    sub = hub.subscribe("ws", [A])
    await hub.publish(A, b"queued")  # still unread: dropped, the closing frame is what is left
    hub.close(b"closing")
    assert await sub.next(0) == b"closing"
    with pytest.raises(SubscriberClosed) as closed:
        await sub.next(0)
    assert closed.value.code == CLOSE_SHUTDOWN
    with pytest.raises(HubFull):
        hub.subscribe("ws", [A])


async def test_written_waits_for_each_closing_frame_to_be_taken_and_no_longer_than_its_bound() -> None:
    hub = RealtimeHub()
    reader = hub.subscribe("ws", [A])
    stalled = hub.subscribe("ws", [A])  # its client stopped reading: never takes the frame
    gone = hub.subscribe("sse", [A])
    subs = hub.close(b"closing")
    assert set(subs) == {reader, stalled, gone}
    hub.unsubscribe(gone)  # its connection ended: nothing of it is left to write

    async def read_to_the_end() -> None:
        assert await reader.next(None) == b"closing"
        with pytest.raises(SubscriberClosed):
            await reader.next(None)

    writing = asyncio.create_task(read_to_the_end())
    assert await hub.written(subs, 0.2) == 1  # the stalled one only
    await writing
    assert reader.ended.is_set() and not stalled.ended.is_set()
    assert await hub.written([reader, gone], 0) == 0
