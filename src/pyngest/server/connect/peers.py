"""Connect across processes (scale-out): a request whose run this process owns, for an app with
no worker connected here, is forwarded over HTTP to another process of the cluster, which sends
it to one of its workers and answers with the worker's reply (docs/scale-out.md).

Peers are the live rows of the ``nodes`` table. A peer with no worker of the app answers 404 at
once, so asking them in turn costs one round trip each. A forwarded request carries its run's
environment: only a worker of that environment runs it.

The process that sent a request to its worker holds its lease. A worker that reconnects to
another process in the middle of a step goes on extending there and replies there: those
extensions and replies reach the holder (extend and flush, below).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from pyngest.protocol.connectpb import connect_pb2 as pb
from pyngest.protocol.signing import hash_signing_key
from pyngest.server.executor.driver import DriverResponse

if TYPE_CHECKING:
    from pyngest.server.cluster.node import ClusterNode
    from pyngest.server.connect.hub import ConnectHub

log = logging.getLogger("pyngest.connect")

FORWARD_PATH = "/v0/connect/forward"
EXTEND_PATH = "/v0/connect/extend"
FORWARDED = "x-pyngest-forwarded"
ENV_HEADER = "x-pyngest-env-id"
SDK_HEADER = "x-pyngest-connect-sdk"
_DB_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"


class ConnectPeers:
    def __init__(self, cluster: ClusterNode, hub: ConnectHub, *, signing_key: str | None, timeout_s: float) -> None:
        self.cluster = cluster
        self.hub = hub
        self._auth = {"authorization": f"Bearer {hash_signing_key(signing_key)}"} if signing_key else {}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))

    async def close(self) -> None:
        await self.http.aclose()

    async def urls(self) -> list[str]:
        """The other live processes of the cluster."""
        ttl_ms = int(self.cluster.leases.ttl_ms)
        rows = await self.cluster.store.fetch(
            f"SELECT url FROM nodes WHERE id <> $1 AND seen_ms > {_DB_NOW} - $2 ORDER BY seen_ms DESC",
            self.cluster.node_id, ttl_ms)
        return [str(r["url"]) for r in rows]

    async def execute(self, *, url: str, step_id: str, body: bytes, run_id: str, job_id: str, env_id: str,
                      started_ms: int) -> DriverResponse | None:
        """The reply of a peer's worker; None when no peer has a worker of the app (in the run's
        environment)."""
        headers = {**self._auth, FORWARDED: self.cluster.node_id, "content-type": "application/json",
                   ENV_HEADER: env_id,
                   "x-pyngest-connect-url": url, "x-pyngest-step-id": step_id, "x-pyngest-run-id": run_id,
                   "x-pyngest-job-id": job_id}
        for peer in await self.urls():
            try:
                res = await self.http.post(peer.rstrip("/") + FORWARD_PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("connect: forwarding a request to %s failed: %s", peer, exc)
                continue
            if res.status_code == 404:
                continue
            ended = self.hub.clock.now_ms()
            if res.status_code != 200:
                return DriverResponse(status=0, started_ms=started_ms, ended_ms=ended,
                                      transport_error=f"connect worker behind {peer}: {res.text[:500]}")
            reply = pb.SDKResponse()
            reply.ParseFromString(res.content)
            log.debug("connect: request for run %s forwarded to %s", run_id, peer)
            return self.hub.response(reply, res.headers.get(SDK_HEADER, ""), started_ms, ended)
        return None

    async def extend(self, raw: bytes) -> str | None:
        """A lease extension for a request this process does not hold: the new lease id from
        the peer that holds it, or None (no peer does, or it lapsed)."""
        headers = {**self._auth, FORWARDED: self.cluster.node_id, "content-type": "application/protobuf"}
        for peer in await self.urls():
            try:
                res = await self.http.post(peer.rstrip("/") + EXTEND_PATH, content=raw, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("connect: passing a lease extension to %s failed: %s", peer, exc)
                continue
            if res.status_code != 200:
                continue  # 404: not that peer's request
            ack = pb.WorkerRequestExtendLeaseAckData()
            ack.ParseFromString(res.content)
            return ack.new_lease_id if ack.HasField("new_lease_id") else None
        return None

    async def flush(self, raw: bytes) -> None:
        """A flushed reply no request here waits for may be another process's."""
        headers = {**self._auth, FORWARDED: self.cluster.node_id, "content-type": "application/protobuf"}
        for peer in await self.urls():
            try:
                await self.http.post(peer.rstrip("/") + "/v0/connect/flush", content=raw, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("connect: passing a flushed reply to %s failed: %s", peer, exc)
