"""A connect worker whose app cannot be synced because the store is down is told so
(SYNC_FAILED, then close 4001, as for any refused handshake) and connects once the store is back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.server.store.base import StoreUnavailable
from tests.conformance import raw_worker
from tests.integration.server.harness import Harness
from tests.integration.server.test_write_count_sdks import served


async def test_a_sync_the_store_cannot_take_is_refused_then_succeeds_later(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = harness.service.registry
    register = registry.register

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("connection refused")

    functions = [raw_worker.function("down-app", "fn", "down/event")]
    async with served(harness) as url:
        monkeypatch.setattr(registry, "register", down)
        # the raw worker's start request blocks: its own loop, in a thread
        kind, message, code = await asyncio.to_thread(
            asyncio.run, raw_worker.refused_handshake(url, "down-app", functions, "w-1"))
        assert kind == pb.SYNC_FAILED and code == 4001
        assert "database is unavailable" in message and "down-app" in message
        assert registry.app_by_name("down-app") is None and harness.service.connect.workers_of("down-app") == []

        monkeypatch.setattr(registry, "register", register)

        async def connects() -> None:
            ws = await raw_worker.open_worker(url, "down-app", functions, "w-2")
            await ws.close()

        await asyncio.to_thread(asyncio.run, connects())
        assert registry.app_by_name("down-app") is not None
