"""Requests about a run that only the process owning its shard can answer (scale-out): a
checkpoint must reach the process that dispatched the request it belongs to. Another process
forwards such a request there, once."""

from __future__ import annotations

import logging

import httpx
from starlette.requests import Request
from starlette.responses import Response

from pyngest.server.api.common import public_error
from pyngest.server.cluster.node import ClusterNode

log = logging.getLogger("pyngest.api")

FORWARDED = "x-pyngest-forwarded"
_PASS_HEADERS = ("authorization", "content-type", "x-inngest-sdk", "x-inngest-signature", "user-agent")


async def forward(cluster: ClusterNode, request: Request, run_id: str, body: bytes | None = None) -> Response:
    """``body``: the request's body when the caller has already read it from the stream."""
    if request.headers.get(FORWARDED):
        # forwarded to us as the owner, but the shard moved on meanwhile: the SDK tries again
        return public_error(f"run {run_id} is moving to another server process; try again", 503)
    url = await cluster.owner_url(run_id)
    if url is None:
        return public_error(f"no server process holds run {run_id} right now (one is taking over); try again", 503)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_HEADERS}
    headers[FORWARDED] = cluster.node_id
    target = url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        resp = await cluster.http.request(request.method, target, content=body if body is not None else await request.body(),
                                           headers=headers)
    except httpx.HTTPError as exc:
        log.warning("forwarding %s for run %s to %s failed: %s", request.url.path, run_id, url, exc)
        return public_error(f"the server process holding run {run_id} did not answer; try again", 503)
    return Response(resp.content, status_code=resp.status_code,
                    media_type=resp.headers.get("content-type"))
