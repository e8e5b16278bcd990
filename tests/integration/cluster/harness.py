"""Several pyngest processes' worth of services in one test: each node a full Service with its
own HTTP server on a real port, all on one PostgreSQL schema and Redis, sharing one test clock.

Nodes run in one event loop here (the crash test in tests/conformance runs real processes);
what they share is only what separate processes share: the database, Redis and HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from pyngest.clock import TestClock
from pyngest.server.api.app import build_app
from pyngest.server.config import ServerConfig
from pyngest.server.service import Service
from tests import backends
from tests.integration.server.harness import FakeApp


@dataclass
class Node:
    service: Service
    server: uvicorn.Server
    task: asyncio.Task[None]
    http: httpx.AsyncClient
    port: int

    @property
    def owned(self) -> set[int]:
        assert self.service.cluster is not None
        return set(self.service.cluster.shards.owned)


class Cluster:
    def __init__(self, directory: Path, nodes: int = 3, *, postgres: str | None = None, redis: str | None = None,
                 **config: Any) -> None:
        """``postgres`` / ``redis``: reach them at another address (a proxy a test can cut)."""
        self.directory = directory
        self.count = nodes
        self.config = config
        self.clock = TestClock(start_ms=1_800_000_000_000)
        self.schema = backends.schema_for(directory)
        self.uri = backends.postgres_uri(self.schema)
        self.node_uri = backends.postgres_uri(self.schema, base=postgres) if postgres else self.uri
        self.redis = redis or backends.REDIS_URI
        self.app = FakeApp()
        self.nodes: list[Node] = []

    async def start(self) -> None:
        await backends.create_schema(self.schema)
        await self.app.start()
        for _ in range(self.count):
            await self.add_node()
        await self.balanced()

    async def add_node(self, **overrides: Any) -> Node:
        # bound here and handed to uvicorn: a port picked free and bound later can be taken in
        # between (another worker's outgoing connection), which failed a node's start
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        config = ServerConfig(
            sqlite_dir=self.directory / f"node{len(self.nodes)}", host="127.0.0.1", port=port, discovery=False,
            poll=False, queue_workers=8, postgres_uri=self.node_uri, redis_uri=self.redis, lease_ttl_s=2.0,
            shutdown_grace_s=1.0, **{**self.config, **overrides},
        )
        service = Service(config, clock=self.clock)
        await service.start(sync_apps=False)
        server = uvicorn.Server(uvicorn.Config(build_app(service), host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning", access_log=False))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():  # it could not start: stop what did, and say why
                await service.stop()
                task.result()
                raise AssertionError("node's HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        node = Node(service, server, task, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30), port)
        self.nodes.append(node)
        return node

    async def stop(self) -> None:
        for node in list(self.nodes):
            await self.stop_node(node)
        await self.app.stop()

    async def stop_node(self, node: Node) -> None:
        node.server.should_exit = True
        with contextlib.suppress(Exception):
            await node.task
        await node.http.aclose()
        await node.service.stop()
        self.nodes.remove(node)

    async def crash_node(self, node: Node) -> None:
        """As if the process died: it stops renewing its leases and working, gives nothing back."""
        assert node.service.cluster is not None
        await node.service.cluster.leases.abandon()
        node.service.cluster.leases.held.clear()  # so stopping releases nothing
        await self.stop_node(node)

    async def balanced(self, timeout: float = 20) -> None:
        """Until every shard is owned, by the live nodes evenly."""
        deadline = time.monotonic() + timeout
        while True:
            owned = [n.owned for n in self.nodes]
            total = self.nodes[0].service.cluster.shards.count if self.nodes else 0  # type: ignore[union-attr]
            covered = set().union(*owned) if owned else set()
            share = -(-total // max(1, len(self.nodes)))
            if len(covered) == total and all(len(o) <= share for o in owned) and \
                    sum(len(o) for o in owned) == total:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"shards not balanced in {timeout}s: {[sorted(o) for o in owned]}")
            await asyncio.sleep(0.05)

    async def register(self, *functions: dict[str, Any], via: int = 0) -> None:
        service = self.nodes[via].service
        outcome = await service.registry.register({
            "appName": "test", "url": self.app.url, "sdk": "py:v0.5.19", "framework": "fast_api",
            "functions": list(functions),
        })
        await service.after_sync(outcome)
        await self.settle()

    async def send(self, *events: dict[str, Any], via: int = 0) -> list[str]:
        resp = await self.nodes[via].http.post("/e/key", json=list(events))
        assert resp.status_code == 200, resp.text
        return list(resp.json()["ids"])

    async def runs_for(self, event_id: str, via: int = 0) -> list[dict[str, Any]]:
        resp = await self.nodes[via].http.get(f"/v1/events/{event_id}/runs")
        return list(resp.json()["data"])

    async def run_ended(self, event_id: str, timeout: float = 20.0, via: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            runs = await self.runs_for(event_id, via)
            if runs and all(r["status"] not in ("Queued", "Running") for r in runs):
                assert len(runs) == 1, runs
                return runs[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"runs of {event_id} did not end in time: {runs}")
            await asyncio.sleep(0.02)

    async def settle(self) -> None:
        for node in self.nodes:
            assert node.service.cluster is not None
            await node.service.cluster.quiesce()

    async def advance(self, ms: int) -> None:
        await self.settle()
        self.clock.advance(ms)
        await self.settle()
